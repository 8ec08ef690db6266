"""Where parallel work runs: a local dask cluster sized to the machine, or an existing one.

No Prefect here. ``nyceo acquire --parallel`` asks :func:`dask_client` for a ``distributed.Client``
and hands it to the stage (``run_acquire(config, month, client=...)``); the flows build their
prefect-dask task runner from :func:`local_cluster_kwargs` (``flows/steps/dask.py``). Inference
reaches GPU workers through the ``nyc-infer`` deployment, not dask resources.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Iterator

from distributed import Client, LocalCluster

from nyceo.config import DaskConfig

log = logging.getLogger("nyceo.cluster")


def machine_cores() -> int:
    """Cores this process may use (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def local_cluster_kwargs(cfg: DaskConfig) -> dict[str, Any]:
    """Keyword arguments of the local cluster: worker processes sized to the machine by default."""
    n_workers = cfg.n_workers or max(1, machine_cores() // cfg.threads_per_worker)
    return {
        "n_workers": n_workers,
        "threads_per_worker": cfg.threads_per_worker,
        "processes": True,
        "memory_limit": cfg.memory_limit,
        "dashboard_address": None,
    }


@contextmanager
def dask_client(cfg: DaskConfig, connect_timeout_s: float = 20.0) -> Iterator[Client]:
    """A client of the configured cluster (``scheduler_address``) or of a new local one.

    The local cluster lives only inside the ``with`` block; an existing cluster is left running.
    """
    if cfg.scheduler_address:
        try:
            client = Client(cfg.scheduler_address, timeout=f"{connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(
                f"dask scheduler {cfg.scheduler_address} (dask.scheduler_address) is not reachable: "
                f"{exc}; start it with `dask scheduler` or set dask.scheduler_address: null for a local cluster"
            ) from exc
        with client:
            yield client
        return
    kwargs = local_cluster_kwargs(cfg)
    log.info("starting a local dask cluster: %s", kwargs)
    with LocalCluster(**kwargs) as cluster, Client(cluster) as client:
        yield client
