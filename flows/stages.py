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
    (otherwise each worker would start its own temporary server). Workers of an existing cluster
    must have PREFECT_API_URL in their environment.
    """
    if cfg.scheduler_address:
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
