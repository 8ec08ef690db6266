"""Mosaic step: one task per adapter (its prediction store read once, every area clipped) on dask,
then the STAC catalog update."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed

from flows.steps import StageContext
from flows.steps.dask import dask_task_runner
from nyceo.contract import Stage


@flow(name="mosaic-adapters")
def mosaic_adapters(config_path: str, month: str, adapters: list[str]) -> list[dict[str, Any]]:
    from tasks.mosaic import mosaic_adapter_task

    logger = get_run_logger()
    futures = [mosaic_adapter_task.with_options(name=f"mosaic-{a}").submit(config_path, month, a) for a in adapters]
    out = []
    for done, fut in enumerate(as_completed(futures), start=1):
        out.append(fut.result())
        logger.info("mosaic %s: %d/%d adapters", month, done, len(futures))
    return out


def mosaic_step(ctx: StageContext, stage: Stage) -> dict[str, Any]:
    from nyceo.mosaic.stage import mosaic_up_to_date
    from tasks.mosaic import mosaic_catalog_task

    adapters = sorted(ctx.config.infer.adapters)
    counts = {a: mosaic_up_to_date(ctx.config, ctx.month, a) for a in adapters}
    todo = [a for a, (ok, n) in counts.items() if ok < n]
    total = sum(n for _, n in counts.values())
    ctx.logger.info("mosaic %s: %d/%d adapter x area up to date; %d adapters to do", ctx.month,
                    sum(ok for ok, _ in counts.values()), total, len(todo))
    if todo:  # no cluster at all when every output is current
        mosaic_adapters.with_options(task_runner=dask_task_runner(ctx.config.dask))(ctx.config_path, ctx.month, todo)
    catalog = mosaic_catalog_task(ctx.config_path, ctx.month, adapters)
    return {"status": "done", "cached": not todo, "areas": total, "catalog": catalog}
