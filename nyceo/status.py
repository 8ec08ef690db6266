"""Months and run summaries: which month to process, what a run produced, which months are done.

No Prefect here. The monthly flow builds its summary with :func:`new_summary` /
:func:`finish_summary` and writes it atomically with :func:`write_summary` to
``outputs/<YYYY-MM>/run_summary.json``; ``nyceo status`` reads those files back together with the
stages' own status functions (e.g. the acquisition stage's finished-block records).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

import fsspec

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, join, write_json_atomic

SCHEDULE_TZ = "America/New_York"
STAGES: tuple[str, ...] = ("grid", "acquire", "infer", "mosaic", "change")
NOT_BUILT = "not built yet"
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
        "stages": {s: {"status": "not requested"} for s in STAGES if s not in stages},
    }


def finish_summary(summary: dict[str, Any], elapsed_s: float) -> dict[str, Any]:
    """Add the month's overall status: failed > skipped > partial > done."""
    states = [st["status"] for name, st in summary["stages"].items() if name in summary["requested_stages"]]
    if any(s == _FAIL for s in states):
        overall = _FAIL
    elif summary["stages"].get("acquire", {}).get("status") == _SKIP:
        overall = _SKIP  # no usable data: nothing downstream can exist, and that is a finished state
    elif all(s in ("done", "cached") for s in states):
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
    """True when the month's last run, with this configuration and at least ``stages``, ended
    done or skipped (no usable data)."""
    s = read_summary(config, month)
    return bool(s and s.get("config_hash") == config.config_hash() and s.get("status") in ("done", _SKIP)
                and set(stages) <= set(s.get("requested_stages", [])))


def months_on_disk(config: PipelineConfig) -> list[str]:
    """Months with an output folder under output_root, sorted."""
    root = config.run.output_root
    if is_remote(root):
        fs, p = fsspec.core.url_to_fs(root)
        names = [Path(n).name for n in fs.ls(p, detail=False)] if fs.exists(p) else []
    else:
        names = [n.name for n in Path(root).iterdir()] if Path(root).is_dir() else []
    return sorted(n for n in names if paths.MONTH_RE.match(n))


StageProbe = Callable[[PipelineConfig, str], dict[str, Any]]


def month_report(config: PipelineConfig, month: str, probes: dict[str, StageProbe] | None = None) -> dict[str, Any]:
    """One month's state: from run_summary.json, refined by the stages' own status functions.

    A month with no summary but some stage progress on disk (a run that was killed) is 'partial'.
    """
    s = read_summary(config, month)
    row: dict[str, Any] = {"month": month, "status": "not run", "reason": ""}
    if s:
        row["status"] = s.get("status", "partial")
        if s.get("config_hash") != config.config_hash():
            row["reason"] = "ran with another configuration"
        failed = [f"{k}: {v.get('reason', '')}" for k, v in s["stages"].items() if v["status"] in (_FAIL, _SKIP)]
        row["reason"] = "; ".join(filter(None, [row["reason"], *failed]))
    for name, probe in (probes or {}).items():
        try:
            row[name] = probe(config, month)
        except Exception as exc:  # a status probe must never break the report
            row[name] = {"error": repr(exc)}
    if row["status"] == "not run" and any(isinstance(v, dict) and v.get("done") for v in row.values()):
        row["status"] = "partial"
        row["reason"] = "interrupted: some work on disk, no run summary"
    return row


def status_table(config: PipelineConfig, probes: dict[str, StageProbe] | None = None) -> list[dict[str, Any]]:
    return [month_report(config, m, probes) for m in months_on_disk(config)]
