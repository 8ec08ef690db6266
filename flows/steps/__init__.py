"""Stage steps of the monthly flow, driven by the stage registry (``nyceo.contract``).

:func:`run_stage` is the one way the flow runs a stage: ask the stage's own ``status``; when its
outputs are current, record it as cached and touch nothing; otherwise take the (output root,
month, stage) lock, ask again (another run may have finished it while we waited) and run its step.
A stage without a step of its own runs as one Prefect task calling ``STAGE.run(config, month)``;
stages with parallel work units have a step module here (``acquire``: blocks on dask; ``infer``: a
``gpu``-tagged task or the nyc-infer deployment; ``mosaic``: one task per adapter on dask).
Steps pass paths and keys, never arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from prefect import get_run_logger, task

from nyceo.config import PipelineConfig, load_config
from nyceo.contract import Stage, get
from nyceo.locks import stage_lock


@dataclass
class StageContext:
    """What every stage step needs."""

    config: PipelineConfig
    config_path: str
    month: str
    infer_deployment: str | None = None

    @property
    def logger(self):
        return get_run_logger()


@task(name="stage")
def stage_task(config_path: str, month: str, name: str) -> dict[str, Any]:
    """Run one registered stage's plain ``run`` (generic step)."""
    return get(name).run(load_config(config_path), month)


def generic_step(ctx: StageContext, stage: Stage) -> dict[str, Any]:
    return stage_task.with_options(name=f"stage-{stage.name}")(ctx.config_path, ctx.month, stage.name)


def _custom_steps() -> dict[str, Callable[[StageContext, Stage], dict[str, Any]]]:
    from flows.steps.acquire import acquire_step
    from flows.steps.infer import infer_step
    from flows.steps.mosaic import mosaic_step

    return {"acquire": acquire_step, "infer": infer_step, "mosaic": mosaic_step}


def run_stage(ctx: StageContext, stage: Stage) -> dict[str, Any]:
    """Bring one stage up to date for the month (see module doc); return its summary record."""
    cfg, month = ctx.config, ctx.month
    reason = stage.enabled(cfg)
    if reason:
        return {"status": "skipped", "reason": reason}
    before = stage.status(cfg, month)
    if before.state == "current":
        return {"status": "done", "cached": True, "key": before.key}
    with stage_lock(cfg, month if stage.per_month else None, stage.name):
        again = stage.status(cfg, month)
        if again.state == "current":  # finished by the run we waited for
            return {"status": "done", "cached": True, "key": again.key}
        if before.state == "stale":
            ctx.logger.info("%s %s: stale (%s); rebuilding beside the published outputs", stage.name, month,
                            before.reason)
        step = _custom_steps().get(stage.name, generic_step)
        record = step(ctx, stage)
    return record
