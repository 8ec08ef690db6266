"""Stage steps of the monthly flow: each runs one stage's tasks and returns its summary record.

Steps take a :class:`StageContext` (config, config path, month) and return a JSON-able record
``{"status": "done"|"skipped"|..., "cached": bool, ...}``. Parallel work units run on dask:
acquisition blocks are mapped by the ``acquire-blocks`` subflow, whose DaskTaskRunner is built from
the configuration (``dask.scheduler_address`` -> that cluster; else a local cluster sized to the
machine), so a deployment's worker uses whatever cluster its config names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect_dask import DaskTaskRunner

from flows.policies import cached, network_retries, result_dir
from nyceo.cluster import local_cluster_kwargs
from nyceo.config import DaskConfig, PipelineConfig


@dataclass
class StageContext:
    """What every stage step needs; ``state`` carries paths between stages (never arrays)."""

    config: PipelineConfig
    config_path: str
    month: str
    infer_deployment: str | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def logger(self):
        return get_run_logger()

    def results(self) -> Any:
        """Where this month's task results (and cache records) are persisted."""
        return result_dir(self.config.run.output_root, self.month)


def run_task(task: Any, *args: Any, **kwargs: Any) -> tuple[Any, bool]:
    """Run a task; return (result, whether it came from the cache). Failures raise."""
    state = task(*args, return_state=True, **kwargs)
    return state.result(), state.name == "Cached"


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

        if not PREFECT_API_URL.value():
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


@flow(name="acquire-blocks")
def acquire_blocks(config_path: str, month: str, block_ids: list[str]) -> list[dict[str, Any]]:
    """Acquire blocks in parallel on the flow's dask task runner; log done/total as they finish."""
    from tasks.acquire import acquire_block_task

    logger = get_run_logger()
    block_task = acquire_block_task.with_options(**network_retries())
    futures = [block_task.with_options(name=f"acquire-{b}").submit(config_path, month, b) for b in block_ids]
    records = []
    for done, fut in enumerate(as_completed(futures), start=1):
        rec = fut.result()
        records.append(rec)
        logger.info("acquire %s: %d/%d blocks (%s %s)", month, done, len(futures), rec.get("block_id", "?"),
                    rec.get("status", "?"))
    return records


def acquire_step(ctx: StageContext) -> dict[str, Any]:
    """Plan (catalog search, retried on network errors), map unfinished blocks on dask, finalize."""
    from nyceo.acquire import stack_status
    from tasks.acquire import finalize_acquire_task, plan_acquire_task

    cfg, month = ctx.config, ctx.month
    complete = stack_status(cfg, month)["status"] == "done"
    finalize = cached(finalize_acquire_task, ctx.results(), refresh=not complete)
    if complete:  # a finished stack: the cached record, no search, no cluster
        rec, was_cached = run_task(finalize, ctx.config_path, month)
        ctx.state["stack_path"] = rec["store"]
        return {**rec, "cached": was_cached}
    planned = plan_acquire_task.with_options(**network_retries())(ctx.config_path, month)
    if planned.get("status") != "planned":
        return {"status": "skipped", "reason": f"{planned.get('reason')}: {planned.get('detail', '')}"}
    todo = [b for b in planned["blocks"] if b not in set(planned["done"])]
    ctx.logger.info("acquire %s: %d/%d blocks already recorded, %d to do on dask", month,
                    len(planned["done"]), len(planned["blocks"]), len(todo))
    if todo:
        acquire_blocks.with_options(task_runner=dask_task_runner(cfg.dask))(ctx.config_path, month, todo)
    rec, was_cached = run_task(finalize, ctx.config_path, month)
    if rec.get("status") != "done":
        return {"status": "skipped", "reason": f"{rec.get('reason')}: {rec.get('detail', '')}"}
    ctx.state["stack_path"] = rec["store"]
    return {**rec, "cached": was_cached, "blocks_resumed": len(planned["done"])}


def store_digest(stores: list[str]) -> str:
    """sha256 over the root metadata (zarr.json, with provenance) of upstream stores: a re-acquired
    stack or re-predicted store changes it, so downstream caches keyed on it are not reused."""
    import hashlib

    import fsspec

    h = hashlib.sha256()
    for store in sorted(stores):
        fs, p = fsspec.core.url_to_fs(f"{store.rstrip('/')}/zarr.json")
        h.update(fs.cat_file(p) if fs.exists(p) else b"missing")
    return h.hexdigest()[:16]


def infer_local(ctx: StageContext, adapters: list[str]) -> tuple[dict[str, str], bool]:
    """The infer task in this process, tagged ``gpu`` (tag concurrency limit), cached on the
    config hash (adapter sources and sha256 pins are part of it), month, adapters and the stack."""
    from nyceo import paths
    from tasks.infer import infer_task

    from flows.monthly import exists

    cfg, month = ctx.config, ctx.month
    missing = [a for a in adapters if not exists(paths.pred_store(cfg, month, a))]
    task = cached(infer_task, ctx.results(), refresh=bool(missing), tags=["gpu"],
                  extra_key=store_digest([paths.stack_store(cfg, month)]))
    return run_task(task, ctx.config_path, month, adapters)


def infer_step(ctx: StageContext) -> dict[str, Any]:
    """Inference on a GPU worker (the nyc-infer deployment) or in this process."""
    from nyceo import paths

    adapters = sorted(ctx.config.infer.adapters)
    if not adapters:
        return {"status": "skipped", "reason": "no adapters configured (infer.adapters)"}
    if ctx.infer_deployment:
        from prefect.deployments import run_deployment

        run = run_deployment(ctx.infer_deployment, parameters={"month": ctx.month, "config_path": ctx.config_path,
                                                             "adapters": adapters}, timeout=None)
        if not run.state or not run.state.is_completed():
            raise RuntimeError(f"{ctx.infer_deployment} run {run.name} ended {run.state and run.state.name}: "
                               f"{run.state and run.state.message}")
        stores, was_cached, where = {a: paths.pred_store(ctx.config, ctx.month, a) for a in adapters}, False, ctx.infer_deployment
    else:
        (stores, was_cached), where = infer_local(ctx, adapters), "local"
    ctx.state["pred_stores"] = stores
    ctx.logger.info("infer %s: %d/%d adapters predicted (%s)", ctx.month, len(stores), len(adapters), where)
    return {"status": "done", "cached": was_cached, "ran_on": where, "stores": stores}


@flow(name="mosaic-areas")
def mosaic_areas(config_path: str, month: str, pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    """One mosaic task per adapter x area on the flow's dask task runner; done/total logged."""
    from tasks.mosaic import mosaic_area_task

    logger = get_run_logger()
    futures = [mosaic_area_task.with_options(name=f"mosaic-{a}-{s}").submit(config_path, month, a, s) for a, s in pairs]
    out = []
    for done, fut in enumerate(as_completed(futures), start=1):
        out.append(fut.result())
        logger.info("mosaic %s: %d/%d adapter x area", month, done, len(futures))
    return out


def mosaic_step(ctx: StageContext) -> dict[str, Any]:
    """COGs for every adapter x (borough, city) on dask, then the STAC catalog update.

    Each mosaic task skips itself when its outputs' input key matches (the stage's own check).
    """
    from nyceo.mosaic.stage import area_slugs
    from tasks.mosaic import mosaic_catalog_task

    adapters = sorted(ctx.state.get("pred_stores") or ctx.config.infer.adapters)
    pairs = [(a, s) for a in adapters for s in area_slugs(ctx.config)]
    todo = [pair for pair in pairs if not mosaic_up_to_date(ctx.config, ctx.month, *pair)]
    ctx.logger.info("mosaic %s: %d/%d adapter x area up to date, %d to do", ctx.month,
                    len(pairs) - len(todo), len(pairs), len(todo))
    if todo:  # no cluster at all when every output is current
        mosaic_areas.with_options(task_runner=dask_task_runner(ctx.config.dask))(ctx.config_path, ctx.month, todo)
    catalog = mosaic_catalog_task(ctx.config_path, ctx.month, adapters)
    return {"status": "done", "cached": not todo, "areas": len(pairs), "up_to_date": len(pairs) - len(todo),
            "catalog": catalog}


def mosaic_up_to_date(config: PipelineConfig, month: str, adapter: str, area: str) -> bool:
    """The mosaic stage's own check: every file of adapter x area exists and carries the input key."""
    from nyceo import paths
    from nyceo.mosaic.predstore import open_pred_store
    from nyceo.mosaic.stage import input_key, is_up_to_date, output_rels

    store = open_pred_store(paths.pred_store(config, month, adapter), config, adapter)
    return is_up_to_date(config, output_rels(config, month, adapter, area), input_key(config, store, adapter, area))
