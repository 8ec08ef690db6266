"""Months and run summaries: which month to process, what a run produced, which months are done.

No Prefect here. The monthly flow builds its summary with :func:`new_summary` /
:func:`finish_summary` and writes it atomically with :func:`write_summary` to
``outputs/<YYYY-MM>/run_summary.json``. Whether a month's outputs are current is never read from
a summary: it is each registered stage's own ``status`` (``nyceo.contract``), which compares the
published outputs' keys with the keys the configuration asks for.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fsspec

from nyceo import contract, paths
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, join, write_json_atomic

SCHEDULE_TZ = "America/New_York"
# Stage status -> month status precedence: the worst stage decides.
_FAIL, _SKIP = "failed", "skipped"


def _now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def previous_month(now: dt.datetime | None = None, tz: str = SCHEDULE_TZ) -> str:
    """The calendar month before ``now`` (default: the current time) in time zone ``tz``."""
    now = (now or dt.datetime.now(dt.timezone.utc)).astimezone(ZoneInfo(tz))
    first = now.date().replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


def month_range(start: str, end: str) -> list[str]:
    """Every month from ``start`` to ``end`` inclusive (YYYY-MM)."""
    paths.check_month(start), paths.check_month(end)
    y, m = map(int, start.split("-"))
    ye, me = map(int, end.split("-"))
    if (y, m) > (ye, me):
        raise ValueError(f"backfill start {start} is after end {end}; swap them")
    out = []
    while (y, m) <= (ye, me):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def summary_path(config: PipelineConfig, month: str) -> str:
    return join(paths.month_dir(config, month), "run_summary.json")


def new_summary(config: PipelineConfig, month: str, stages: list[str]) -> dict[str, Any]:
    """An empty summary; stages not requested are recorded as such, not silently dropped."""
    return {
        "month": month,
        "run_name": config.run.name,
        "config_hash": config.config_hash(),
        "requested_stages": list(stages),
        "started_utc": _now_utc(),
        "stages": {s: {"status": "not requested"} for s in contract.stage_names() if s not in stages},
    }


def finish_summary(summary: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """Add the month's overall status: failed > skipped > partial > done."""
    states = [st["status"] for name, st in summary["stages"].items() if name in summary["requested_stages"]]
    if any(s == _FAIL for s in states):
        overall = _FAIL
    elif summary["stages"].get("acquire", {}).get("status") == _SKIP:
        overall = _SKIP  # no usable data: nothing downstream can exist, and that is a finished state
    elif all(s in ("done", "cached", _SKIP) for s in states):  # a typed skip is a finished state
        overall = "done"
    else:
        overall = "partial"
    summary["status"] = overall
    summary["finished_utc"] = _now_utc()
    summary["elapsed_s"] = round(elapsed_s, 2)
    return summary


def write_summary(config: PipelineConfig, summary: dict[str, Any]) -> str:
    dest = summary_path(config, summary["month"])
    write_json_atomic(dest, summary)
    return dest


def read_summary(config: PipelineConfig, month: str) -> dict[str, Any] | None:
    """The month's run_summary.json, or None when the month never ran."""
    path = summary_path(config, month)
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    with fs.open(p, "r") as f:
        return json.load(f)


def is_finished(config: PipelineConfig, month: str, stages: list[str]) -> bool:
    """True when every requested stage is current or skipped for ``month`` — or blocked behind a
    stage that was skipped (a month without usable data is finished too)."""
    report = contract.month_status(config, month, stages)
    skipped_upstream = any(s.state == "skipped" for s in report.values())
    return all(s.finished or (s.state == "blocked" and skipped_upstream) for s in report.values())


def months_on_disk(config: PipelineConfig) -> list[str]:
    """Months with an output folder under output_root, sorted."""
    root = config.run.output_root
    if is_remote(root):
        fs, p = fsspec.core.url_to_fs(root)
        names = [Path(n).name for n in fs.ls(p, detail=False)] if fs.exists(p) else []
    else:
        names = [n.name for n in Path(root).iterdir()] if Path(root).is_dir() else []
    return sorted(n for n in names if paths.MONTH_RE.match(n))


def month_report(config: PipelineConfig, month: str) -> dict[str, Any]:
    """One month's state per stage (current / partial / stale / missing / skipped / blocked, from
    the stages' own status) and the last run's outcome (run_summary.json)."""
    s = read_summary(config, month)
    states = contract.month_status(config, month)
    row: dict[str, Any] = {"month": month, "stages": states, "last_run": s.get("status") if s else "never",
                           "reason": ""}
    if s:
        failed = [f"{k}: {v.get('reason', '')}" for k, v in s["stages"].items() if v.get("status") == _FAIL]
        row["reason"] = "; ".join(failed)
    return row


def status_table(config: PipelineConfig) -> list[dict[str, Any]]:
    return [month_report(config, m) for m in months_on_disk(config)]
