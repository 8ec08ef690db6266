"""Where parallel work runs: a local dask cluster sized to the machine, or an existing one.

No Prefect here. The flow asks :func:`dask_client` for a ``distributed.Client`` and hands it to a
stage (``run_acquire(config, month, client=...)``) or to :func:`map_blocks`, which submits one
future per work item (block, borough x adapter) and reports progress as they finish.

Routing: :func:`map_blocks` accepts dask ``resources`` (e.g. ``{"GPU": 1}``). Those are honoured
by the dask scheduler on any cluster whose workers advertise them (``dask worker --resources
GPU=1``), because the futures are submitted with ``Client.submit(..., resources=...)`` directly —
unlike prefect-dask's task runner, which drops ``dask.annotate`` resources on an existing cluster.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence, TypeVar

from distributed import Client, LocalCluster, as_completed

from nyceo.config import DaskConfig

log = logging.getLogger("nyceo.cluster")
T = TypeVar("T")
R = TypeVar("R")
ProgressFn = Callable[[int, int, str], None]


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


def workers_with_resource(client: Client, resource: str) -> list[str]:
    """Addresses of the cluster's workers that advertise ``resource`` (e.g. GPU)."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    return sorted(addr for addr, w in info.items() if w.get("resources", {}).get(resource, 0) > 0)


def map_blocks(
    client: Client,
    fn: Callable[..., R],
    items: Sequence[T],
    *args: Any,
    key_of: Callable[[T], str] = str,
    resources: dict[str, float] | None = None,
    on_progress: ProgressFn | None = None,
    **kwargs: Any,
) -> dict[str, R]:
    """Run ``fn(item, *args, **kwargs)`` for every item on the cluster; return {key: result}.

    Keys (``key_of(item)``) name the dask futures, so a rerun's futures are recognisable in the
    dashboard. ``on_progress(done, total, key)`` is called as each item finishes. The first error
    is raised after the remaining items are cancelled, naming the item that failed.
    """
    total = len(items)
    futures = {}
    for item in items:
        key = key_of(item)
        fut = client.submit(fn, item, *args, key=f"{getattr(fn, '__name__', 'fn')}-{key}",
                            resources=resources, pure=False, **kwargs)
        futures[fut] = key
    results: dict[str, R] = {}
    for done, fut in enumerate(as_completed(list(futures)), start=1):
        key = futures[fut]
        try:
            results[key] = fut.result()
        except Exception as exc:
            client.cancel(list(futures))
            raise RuntimeError(f"work item {key} failed on the dask cluster: {exc!r}") from exc
        if on_progress:
            on_progress(done, total, key)
    return {key_of(item): results[key_of(item)] for item in items}
