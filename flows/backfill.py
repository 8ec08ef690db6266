"""Backfill: every month in a range as a subflow of ``monthly_run``, a bounded number at a time.

- Months already finished with the same configuration (run_summary.json: done, or skipped for
  lack of data) are not run again: they are listed as ``already done``.
- At most ``max_concurrent`` months run at once: each month is a subflow started from a thread of
  the flow's thread-pool task runner, and no more than ``max_concurrent`` are in flight.
- One failed month neither stops the others nor loses their results: its failure is recorded.
- Stages that read earlier months (change layers: M-1, M-12) run in a second pass, month by month
  in chronological order, after every month's other stages: each month's predecessors exist first.
- The flow returns (and logs) a closing table of months done, skipped and failed, with reasons.
Harmonization across the Sentinel-2 processing-baseline change (2022-01-25) is the acquisition
stage's job; the backfill only guarantees every month ran with the same configuration.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from flows.monthly import check_stages, monthly_run
from nyceo import contract, paths
from nyceo.config import load_config
from nyceo.status import is_finished, month_range, read_summary

MAX_CONCURRENT_CAP = 8


@task(name="backfill-month", retries=0)
def month_task(month: str, config_path: str, stages: list[str] | None = None,
               infer_deployment: str | None = None) -> dict[str, Any]:
    """Run one month as a subflow; never raises: a failure becomes a row of the table."""
    state = monthly_run(month=month, config_path=config_path, stages=stages,
                        infer_deployment=infer_deployment, return_state=True)
    if state.is_completed():
        s = state.result()
        reasons = [f"{k}: {v['reason']}" for k, v in s["stages"].items() if v["status"] == "skipped" and "reason" in v]
        return {"month": month, "status": s["status"], "reason": "; ".join(reasons), "elapsed_s": s["elapsed_s"]}
    config = load_config(config_path)
    s = read_summary(config, month) or {}
    failed = [f"{k}: {v.get('reason', '')}" for k, v in s.get("stages", {}).items() if v.get("status") == "failed"]
    return {"month": month, "status": "failed", "reason": "; ".join(failed) or (state.message or state.name)}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table: month, status, reason."""
    lines = [f"{'month':<8} {'status':<13} reason", f"{'-' * 8} {'-' * 13} {'-' * 40}"]
    lines += [f"{r['month']:<8} {r['status']:<13} {r.get('reason', '')}" for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    lines.append("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return "\n".join(lines)


@flow(name="nyc-backfill", task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_CAP), log_prints=True)
def backfill(
    start: str,
    end: str,
    config_path: str = "configs/demo.yaml",
    max_concurrent: int = 2,
    stages: list[str] | None = None,
    infer_deployment: str | None = None,
) -> dict[str, Any]:
    """Run every month from ``start`` to ``end`` (YYYY-MM, inclusive); return the closing table."""
    if not 1 <= max_concurrent <= MAX_CONCURRENT_CAP:
        raise ValueError(f"max_concurrent={max_concurrent} must be between 1 and {MAX_CONCURRENT_CAP}")
    logger = get_run_logger()
    t0 = time.perf_counter()
    config = load_config(config_path)
    months = month_range(start, end)
    paths.check_processable_month(start), paths.check_processable_month(end)
    paths.check_output_root(config)
    wanted = check_stages(stages)
    rows: dict[str, dict[str, Any]] = {}
    todo = []
    for m in months:
        if is_finished(config, m, wanted):
            rows[m] = {"month": m, "status": "already done", "reason": "finished earlier with this configuration"}
        else:
            todo.append(m)
    logger.info("backfill %s..%s: %d months, %d to run, %d at a time", start, end, len(months), len(todo), max_concurrent)
    lagged = contract.lagged(wanted)
    first = [s for s in wanted if s not in lagged]
    in_flight: list[PrefectFuture] = []
    for m in todo:
        if len(in_flight) >= max_concurrent:
            done = next(as_completed(in_flight))
            in_flight.remove(done)
            _record(done, rows, logger, len(rows), len(months))
        in_flight.append(month_task.with_options(name=f"month-{m}").submit(m, str(config_path), first, infer_deployment))
    for fut in as_completed(in_flight):
        _record(fut, rows, logger, len(rows), len(months))
    for m in (todo if lagged else []):  # second pass: stages reading earlier months, in month order
        if rows[m]["status"] != "failed":
            fut = month_task.with_options(name=f"month-{m}-lagged").submit(m, str(config_path), wanted, infer_deployment)
            _record(fut, rows, logger, len(rows) - 1, len(months))
    table = [rows[m] for m in months]
    logger.info("backfill finished in %.1f s\n%s", time.perf_counter() - t0, format_table(table))
    return {"start": start, "end": end, "months": table, "elapsed_s": round(time.perf_counter() - t0, 2)}


def _record(fut: PrefectFuture, rows: dict[str, dict[str, Any]], logger: Any, n_done: int, total: int) -> None:
    row = fut.result()
    rows[row["month"]] = row
    logger.info("backfill: %d/%d months (%s %s)", n_done + 1, total, row["month"], row["status"])
