"""The dask task runner of the flows: the configured cluster, or a local one of worker processes."""

from __future__ import annotations

from prefect import get_run_logger
from prefect_dask import DaskTaskRunner

from nyceo.cluster import local_cluster_kwargs
from nyceo.config import DaskConfig


def current_api_url() -> str | None:
    """The Prefect API this process talks to (also a temporary local server's, which is not in env)."""
    from prefect.client.orchestration import get_client

    url = get_client(sync_client=True).api_url
    return str(url).rstrip("/") if url else None


def dask_task_runner(cfg: DaskConfig) -> DaskTaskRunner:
    """The configured existing cluster, or a local cluster of worker processes sized to the machine.

    Local workers get this process's PREFECT_API_URL, so their task runs report to the same API
    (otherwise each worker would start its own temporary server). On an existing cluster,
    prefect-dask ships the flow's settings (PREFECT_API_URL included) with every task; a flow on a
    temporary server has no URL to ship, so its tasks report to the workers' own PREFECT_API_URL,
    or to a temporary server per worker when they have none: that case is logged as a warning.
    """
    if cfg.scheduler_address:
        from prefect.settings import PREFECT_API_URL

        import os

        if not PREFECT_API_URL.value() or os.environ.get("NYCEO_TEMPORARY_PREFECT_SERVER"):
            get_run_logger().warning(
                "dask.scheduler_address is set but this flow runs on a temporary Prefect server "
                "(PREFECT_API_URL unset): task runs on %s report to the workers' PREFECT_API_URL, or to "
                "temporary servers of their own; start a Prefect server and export PREFECT_API_URL for "
                "the flow and the dask workers",
                cfg.scheduler_address)
        return DaskTaskRunner(address=cfg.scheduler_address)
    kwargs = local_cluster_kwargs(cfg)
    api = current_api_url()
    if api:
        kwargs["env"] = {"PREFECT_API_URL": api}
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=kwargs)
