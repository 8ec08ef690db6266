"""Acquire step: plan (catalog search, retried on network errors), unfinished blocks on dask, finalize."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from flows.policies import network_retries
from flows.steps import StageContext
from flows.steps.dask import dask_task_runner
from nyceo.contract import Stage


@flow(name="acquire-blocks")
def acquire_blocks(config_path: str, month: str, block_ids: list[str], store: str) -> list[dict[str, Any]]:
    """Acquire blocks in parallel on the flow's dask task runner; log done/total as they finish."""
    from tasks.acquire import acquire_block_task

    logger = get_run_logger()
    block_task = acquire_block_task.with_options(**network_retries())
    futures = [block_task.with_options(name=f"acquire-{b}").submit(config_path, month, b, store) for b in block_ids]
    records = []
    for done, fut in enumerate(as_completed(futures), start=1):
        rec = fut.result()
        records.append(rec)
        logger.info("acquire %s: %d/%d blocks (%s %s)", month, done, len(futures), rec.get("block_id", "?"),
                    rec.get("status", "?"))
    return records


def acquire_step(ctx: StageContext, stage: Stage) -> dict[str, Any]:
    from tasks.acquire import finalize_acquire_task, plan_acquire_task

    cfg, month = ctx.config, ctx.month
    planned = plan_acquire_task.with_options(**network_retries())(ctx.config_path, month)
    if planned.get("status") == "current":
        return {"status": "done", "cached": True, "store": planned["store"]}
    if planned.get("status") != "planned":
        return {"status": "skipped", "reason": f"{planned.get('reason')}: {planned.get('detail', '')}"}
    todo = [b for b in planned["blocks"] if b not in set(planned["done"])]
    ctx.logger.info("acquire %s: %d/%d blocks already recorded, %d to do on dask", month,
                    len(planned["done"]), len(planned["blocks"]), len(todo))
    if todo:
        acquire_blocks.with_options(task_runner=dask_task_runner(cfg.dask))(ctx.config_path, month, todo,
                                                                             planned["store"])
    rec = finalize_acquire_task(ctx.config_path, month, planned["store"])
    if rec.get("status") != "done":
        return {"status": "skipped", "reason": f"{rec.get('reason')}: {rec.get('detail', '')}"}
    return {**rec, "cached": False, "blocks_resumed": len(planned["done"])}
