"""Infer step: on a GPU worker (the nyc-infer deployment) or in this process as a ``gpu``-tagged task."""

from __future__ import annotations

from typing import Any

from flows.steps import StageContext
from nyceo import paths
from nyceo.contract import Stage


def infer_local(ctx: StageContext, adapters: list[str]) -> dict[str, str]:
    """The infer task in this process, tagged ``gpu`` (bound it with a tag concurrency limit)."""
    from tasks.infer import infer_task

    return infer_task.with_options(tags=["gpu"])(ctx.config_path, ctx.month, adapters)


def infer_step(ctx: StageContext, stage: Stage) -> dict[str, Any]:
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
        stores, where = {a: paths.pred_store(ctx.config, ctx.month, a) for a in adapters}, ctx.infer_deployment
    else:
        stores, where = infer_local(ctx, adapters), "local"
    after = stage.status(ctx.config, ctx.month)
    if after.state != "current":
        raise RuntimeError(f"infer {ctx.month} ran on {where} but its outputs are {after.describe()}: {after.reason}")
    ctx.logger.info("infer %s: %d adapters predicted (%s)", ctx.month, len(stores), where)
    return {"status": "done", "cached": False, "ran_on": where, "stores": stores}
