"""The monthly city-wide flow: every registered stage (``nyceo.contract``) in dependency order.

``monthly_run(month, config_path)`` runs every requested stage for one month and returns a
JSON-serializable summary of what was produced, reused, skipped and why; the same summary is written
atomically to ``outputs/<YYYY-MM>/run_summary.json``. ``month=None`` means the previous calendar
month in America/New_York (what the ``nyc-monthly`` cron deployment processes).

Each stage is brought up to date by ``flows.steps.run_stage``: outputs whose key matches the
configuration are reused untouched (no Prefect result cache: the stages' own keys decide), stale
ones are rebuilt beside the published ones, and a (month, stage) lock keeps two runs from building
the same outputs. Where work runs: acquisition blocks and mosaics on dask (a local cluster of worker
processes, or ``dask.scheduler_address``); inference as the ``gpu``-tagged ``infer`` task, or the
``nyc-infer`` deployment on the GPU work pool (``infer_deployment="nyc-infer/nyc-infer"``).
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from flows.steps import StageContext, run_stage
from nyceo import contract, paths
from nyceo.config import load_config
from nyceo.status import finish_summary, new_summary, previous_month, write_summary


def check_stages(stages: list[str] | None) -> list[str]:
    """Requested stages in pipeline order; unknown names are a clear error."""
    return contract.check_stage_names(stages)


def _blocked_by(summary: dict[str, Any], stage: contract.Stage) -> str | None:
    """Why ``stage`` cannot run: a same-month required upstream failed or was skipped in this run."""
    for up in stage.upstreams:
        if up.month_offset or up.optional:
            continue
        rec = summary["stages"].get(up.stage, {})
        if rec.get("status") in ("failed", "skipped"):
            return f"{up.stage} {rec['status']}: {rec.get('reason', '')}"
    return None


def run_stages(ctx: StageContext, wanted: list[str], summary: dict[str, Any]) -> BaseException | None:
    """Run the wanted stages in order, recording each; return the first failure (not raised)."""
    failure: BaseException | None = None
    for st in contract.stages():
        if st.name not in wanted:
            continue
        blocked = _blocked_by(summary, st)
        if blocked:
            summary["stages"][st.name] = {"status": "skipped", "reason": blocked}
            continue
        t0 = time.perf_counter()
        try:
            record = run_stage(ctx, st)
        except Exception as exc:  # recorded in the summary, re-raised by the flow at the end
            failure = failure or exc
            record = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            ctx.logger.error("%s failed: %s", st.name, record["reason"])
        record["elapsed_s"] = round(time.perf_counter() - t0, 2)
        summary["stages"][st.name] = record
        ctx.logger.info("%s %s: %s%s", st.name, ctx.month, record["status"], " (reused)" if record.get("cached") else "")
    return failure


def publish_report_artifacts(config: Any, month: str) -> list[str]:
    """The report's headline (markdown + link) and tables as Prefect artifacts; their keys."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from nyceo.report.stage import artifacts

    art = artifacts(config, month)
    key = f"nyc-report-{month}"
    create_markdown_artifact(markdown=art["markdown"], key=key, description=f"nyceo report {month}")
    for table_key, rows in art["tables"].items():
        create_table_artifact(table=rows, key=table_key, description=f"{table_key} ({month})")
    return [key, *art["tables"]]


@flow(name="nyc-monthly", log_prints=True)
def monthly_run(
    month: str | None = None,
    config_path: str = "configs/demo.yaml",
    stages: list[str] | None = None,
    infer_deployment: str | None = None,
) -> dict[str, Any]:
    """Run the requested stages (default: all registered) for ``month`` (None: previous month, New York)."""
    t0 = time.perf_counter()
    month = paths.check_processable_month(month or previous_month())
    wanted = check_stages(stages)
    config = load_config(config_path)
    paths.check_output_root(config)
    ctx = StageContext(config, str(config_path), month, infer_deployment)
    ctx.logger.info("month %s: stages %s, config %s", month, wanted, config.config_hash()[:12])
    summary = new_summary(config, month, wanted)
    failure = run_stages(ctx, wanted, summary)
    if summary["stages"].get("report", {}).get("status") == "done":
        summary["artifacts"] = publish_report_artifacts(config, month)
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
