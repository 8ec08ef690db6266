"""Orchestration on a real Prefect API: months, summaries, caching, retries, backfills."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from prefect import flow, task

from flows.policies import is_transient, retry_on_transient
from nyceo.config import load_config
from nyceo.status import month_range, previous_month, read_summary
from tests.conftest import write_config


def test_previous_month_is_new_york_time():
    # 02:00 UTC on 1 August is still 31 July in New York: the previous month there is June.
    assert previous_month(dt.datetime(2024, 8, 1, 2, 0, tzinfo=dt.timezone.utc)) == "2024-06"
    assert previous_month(dt.datetime(2024, 8, 1, 5, 0, tzinfo=dt.timezone.utc)) == "2024-07"
    assert previous_month(dt.datetime(2025, 1, 15, 12, 0, tzinfo=dt.timezone.utc)) == "2024-12"


def test_month_range_and_errors():
    assert month_range("2021-11", "2022-02") == ["2021-11", "2021-12", "2022-01", "2022-02"]
    with pytest.raises(ValueError, match="after end"):
        month_range("2022-02", "2021-11")
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_range("2022-2", "2022-03")


def test_transient_errors_are_told_apart():
    assert is_transient(ConnectionResetError("reset"))
    assert is_transient(TimeoutError("slow"))
    try:
        try:
            raise OSError("HTTP 503 from asset")
        except OSError as inner:
            raise RuntimeError("block b000_000 failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)  # the cause decides
    assert not is_transient(FileNotFoundError("no such scene"))
    assert not is_transient(ValueError("bad band name"))


def test_retry_condition_retries_network_errors_only(prefect_api, tmp_path):
    calls = {"net": 0, "det": 0}

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_on_transient)
    def flaky_network() -> str:
        calls["net"] += 1
        if calls["net"] < 3:
            raise ConnectionError("catalog search: connection reset")
        return "ok"

    @task(retries=3, retry_delay_seconds=0, retry_condition_fn=retry_on_transient)
    def deterministic() -> str:
        calls["det"] += 1
        raise ValueError("chip r0001_c0001 is not on the lattice")

    @flow
    def f() -> tuple[str, bool]:
        return flaky_network(), deterministic(return_state=True).is_failed()

    assert f() == ("ok", True)
    assert calls == {"net": 3, "det": 1}


def test_monthly_summary_written_and_rerun_reuses_outputs(prefect_api, tmp_path):
    from flows.monthly import monthly_run

    cfg = write_config(tmp_path, grid={"boroughs": ["Staten Island"]})
    first = monthly_run(month="2024-07", config_path=str(cfg), stages=["grid"])
    assert first["status"] == "done" and first["stages"]["grid"]["cached"] is False
    assert first["stages"]["acquire"]["status"] == "not requested"
    on_disk = read_summary(load_config(cfg), "2024-07")
    assert on_disk == {k: v for k, v in first.items() if k != "summary_path"}
    index = Path(first["stages"]["grid"]["path"])
    mtime = index.stat().st_mtime_ns
    second = monthly_run(month="2024-07", config_path=str(cfg), stages=["grid"])
    assert second["stages"]["grid"]["cached"] is True and index.stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob(".prefect-results"))  # no result cache: the stage's key decides
    # outputs deleted -> detected by the stage's status and rebuilt
    index.unlink()
    third = monthly_run(month="2024-07", config_path=str(cfg), stages=["grid"])
    assert third["stages"]["grid"]["cached"] is False and index.is_file()


def test_monthly_rejects_unknown_stages(prefect_api, tmp_path):
    from flows.monthly import monthly_run

    cfg = write_config(tmp_path)
    with pytest.raises(ValueError, match="unknown stage"):
        monthly_run(month="2024-07", config_path=str(cfg), stages=["grid", "acquisition"])


def test_backfill_bounded_failure_tolerant_and_resumable(prefect_api, tmp_path):
    from flows.backfill import backfill

    cfg = write_config(tmp_path, grid={"boroughs": ["Staten Island"]})
    out = tmp_path / "outputs"
    out.mkdir()
    (out / "2024-03").write_text("a file where the month folder should be")  # a month that must fail
    result = backfill("2024-01", "2024-05", str(cfg), max_concurrent=2, stages=["grid"])
    rows = {r["month"]: r for r in result["months"]}
    assert list(rows) == ["2024-01", "2024-02", "2024-03", "2024-04", "2024-05"]
    assert rows["2024-03"]["status"] == "failed" and "2024-03" in rows["2024-03"]["reason"]
    assert all(rows[m]["status"] == "done" for m in rows if m != "2024-03")
    # never more than max_concurrent months in flight
    config = load_config(cfg)
    spans = [(read_summary(config, m)["started_utc"], read_summary(config, m)["finished_utc"]) for m in rows if m != "2024-03"]
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda t: (t[0], t[1]))
    level = peak = 0
    for _, d in events:
        level += d
        peak = max(peak, level)
    assert 1 <= peak <= 2
    # second backfill: months whose stages are current are not run again
    (out / "2024-03").unlink()
    again = backfill("2024-01", "2024-05", str(cfg), max_concurrent=2, stages=["grid"])
    rows2 = {r["month"]: r["status"] for r in again["months"]}
    assert rows2 == {m: "already done" for m in rows}
