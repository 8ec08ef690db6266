"""Infer step: on a GPU worker (the nyc-infer deployment) or in this process as a ``gpu``-tagged task."""

from __future__ import annotations

import time
from typing import Any

from flows.steps import StageContext
from nyceo import paths
from nyceo.contract import Stage


def infer_local(ctx: StageContext, adapters: list[str]) -> dict[str, str]:
    """The infer task in this process, tagged ``gpu`` (bound it with a tag concurrency limit)."""
    from tasks.infer import infer_task

    return infer_task.with_options(tags=["gpu"])(ctx.config_path, ctx.month, adapters)


def run_on_deployment(ctx: StageContext, adapters: list[str]) -> None:
    """Run the infer deployment (a subflow run picked up by a worker of its pool) and wait for it.

    A run no worker starts within ``infer.deployment_pickup_timeout_s`` (no worker on the pool, or all
    busy) is cancelled and fails the stage naming the pool and the command that starts a worker; once
    a worker has it, the wait has no limit (a city month on a busy pool can take long).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled

    name, limit_s = ctx.infer_deployment, ctx.config.infer.deployment_pickup_timeout_s
    run = run_deployment(name, parameters={"month": ctx.month, "config_path": ctx.config_path, "adapters": adapters},
                         timeout=0)
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(run.id).state
            if state is not None and state.is_final():
                break
            if (state is None or state.is_scheduled()) and time.monotonic() - started > limit_s:
                pool = client.read_deployment_by_name(name).work_pool_name
                client.set_flow_run_state(run.id, Cancelled(message=f"not picked up within {limit_s:.0f} s"), force=True)
                raise RuntimeError(
                    f"no worker of work pool '{pool}' started the {name} run '{run.name}' within {limit_s:.0f} s "
                    f"(cancelled): start one (`prefect worker start --pool {pool}`) or raise "
                    "infer.deployment_pickup_timeout_s, then run the month again")
            time.sleep(2.0)
    if not state.is_completed():
        raise RuntimeError(f"{name} run {run.name} ended {state.name}: {state.message}")


def infer_step(ctx: StageContext, stage: Stage) -> dict[str, Any]:
    adapters = sorted(ctx.config.infer.adapters)
    if not adapters:
        return {"status": "skipped", "reason": "no adapters configured (infer.adapters)"}
    if ctx.infer_deployment:
        run_on_deployment(ctx, adapters)
        stores, where = {a: paths.pred_store(ctx.config, ctx.month, a) for a in adapters}, ctx.infer_deployment
    else:
        stores, where = infer_local(ctx, adapters), "local"
    after = stage.status(ctx.config, ctx.month)
    if after.state != "current":
        raise RuntimeError(f"infer {ctx.month} ran on {where} but its outputs are {after.describe()}: {after.reason}")
    ctx.logger.info("infer %s: %d adapters predicted (%s)", ctx.month, len(stores), where)
    return {"status": "done", "cached": False, "ran_on": where, "stores": stores}
