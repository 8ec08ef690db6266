"""The monthly city-wide flow: grid -> acquire -> infer -> mosaic (-> change & exposure, not built yet).

``monthly_run(month, config_path)`` runs every requested stage for one month and returns a
JSON-serializable summary of what was produced, skipped and why; the same summary is written
atomically to ``outputs/<YYYY-MM>/run_summary.json``. ``month=None`` means the previous calendar
month in America/New_York (what the ``nyc-monthly`` cron deployment processes).

Where work runs:
- acquisition blocks (and mosaics) run on dask: a local cluster of worker processes sized to the
  machine, or the existing cluster named by ``dask.scheduler_address`` (``nyceo.cluster``);
- inference is the ``infer`` task, tagged ``gpu`` (create a tag concurrency limit with
  ``prefect concurrency-limit create gpu 1`` to bound how many run at once). With
  ``infer_deployment="nyc-infer/nyc-infer"`` the flow instead runs the ``nyc-infer`` deployment,
  which lives on the GPU work pool, and waits for it: that is how inference reaches GPU workers
  (prefect-dask drops dask GPU resource annotations on an existing cluster, so routing by dask
  annotations through the task runner is not relied on).

Caching and resume: each stage task is cached on (task, nyceo version, config hash, month, ...)
with results persisted under the month's ``.prefect-results``; the stages' own finished-block
records make an interrupted stage resume where it stopped. See flows/policies.py.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from prefect import flow, get_run_logger

from flows.policies import cached, result_dir
from flows.stages import StageContext, acquire_step, infer_step, mosaic_step, run_task
from nyceo import paths
from nyceo.config import PipelineConfig, load_config
from nyceo.grid import counts_per_borough
from nyceo.grid_stage import read_grid
from nyceo.io import is_remote
from nyceo.status import NOT_BUILT, STAGES, finish_summary, new_summary, previous_month, write_summary
from tasks.grid import grid_task

DEFAULT_STAGES: tuple[str, ...] = ("grid", "acquire", "infer", "mosaic")
CHANGE_HOOK = {"status": NOT_BUILT, "reason": "change & exposure layers are a later issue: no stage code exists"}


def exists(path: str) -> bool:
    """Whether an output exists (local path or URL)."""
    if is_remote(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        return fs.exists(p)
    from pathlib import Path

    return Path(path).exists()


def check_stages(stages: list[str] | None) -> list[str]:
    """Requested stages in pipeline order; unknown or unbuilt names are a clear error."""
    if stages is None:
        return list(DEFAULT_STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {list(DEFAULT_STAGES)}")
    if "change" in stages:
        raise ValueError("stage 'change' is not built yet (a later issue); leave it out of stages")
    return [s for s in DEFAULT_STAGES if s in stages]


def grid_step(ctx: StageContext) -> dict[str, Any]:
    cfg = ctx.config
    dest = paths.grid_index(cfg)
    task = cached(grid_task, result_dir(cfg.run.output_root, "grid"), refresh=not exists(dest))
    grid_path, was_cached = run_task(task, ctx.config_path)
    chips = read_grid(grid_path)
    ctx.state["grid_path"] = grid_path
    ctx.logger.info("grid: %d/%d chips indexed -> %s", len(chips), len(chips), grid_path)
    return {"status": "done", "cached": was_cached, "path": grid_path, "chips": len(chips),
            "per_borough": counts_per_borough(chips)}



STEPS: dict[str, Callable[[StageContext], dict[str, Any]]] = {
    "grid": grid_step, "acquire": acquire_step, "infer": infer_step, "mosaic": mosaic_step}
# A stage can only run on its upstream's outputs: a failed or skipped upstream skips it.
UPSTREAM = {"acquire": "grid", "infer": "acquire", "mosaic": "infer"}


def run_stages(ctx: StageContext, wanted: list[str], summary: dict[str, Any]) -> BaseException | None:
    """Run the wanted stages in order, recording each; return the first failure (not raised)."""
    failure: BaseException | None = None
    for name in wanted:
        up = summary["stages"].get(UPSTREAM.get(name, ""), {})
        if up.get("status") in ("failed", "skipped"):
            summary["stages"][name] = {"status": "skipped", "reason": f"{UPSTREAM[name]} {up['status']}: {up.get('reason', '')}"}
            continue
        if name not in STEPS:
            summary["stages"][name] = {"status": NOT_BUILT, "reason": f"stage '{name}' has no tasks yet"}
            continue
        t0 = time.perf_counter()
        try:
            record = STEPS[name](ctx)
        except Exception as exc:  # recorded in the summary, re-raised by the flow at the end
            failure = failure or exc
            record = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            ctx.logger.error("%s failed: %s", name, record["reason"])
        record["elapsed_s"] = round(time.perf_counter() - t0, 2)
        summary["stages"][name] = record
    return failure


@flow(name="nyc-monthly", log_prints=True)
def monthly_run(
    month: str | None = None,
    config_path: str = "configs/demo.yaml",
    stages: list[str] | None = None,
    infer_deployment: str | None = None,
) -> dict[str, Any]:
    """Run the requested stages (default: all built) for ``month`` (None: previous month, New York)."""
    t0 = time.perf_counter()
    month = paths.check_month(month) if month else previous_month()
    wanted = check_stages(stages)
    config = load_config(config_path)
    ctx = StageContext(config, str(config_path), month, infer_deployment)
    ctx.logger.info("month %s: stages %s, config %s", month, wanted, config.config_hash()[:12])
    summary = new_summary(config, month, wanted)
    failure = run_stages(ctx, wanted, summary)
    summary["stages"]["change"] = dict(CHANGE_HOOK)
    finish_summary(summary, time.perf_counter() - t0)
    summary["summary_path"] = write_summary(config, summary)
    ctx.logger.info("month %s: %s in %.1f s", month, summary["status"], summary["elapsed_s"])
    if failure is not None:
        raise RuntimeError(f"month {month} failed: see {summary['summary_path']}") from failure
    return summary


if __name__ == "__main__":  # pragma: no cover
    import json
    import sys

    print(json.dumps(monthly_run(*sys.argv[1:]), indent=2))
