"""Which months exist (the missions' lives, no future), arguments checked before anything starts,
output roots that are not writable folders, and the file mode of atomic writes."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.rerun_bench import TINY
from catalogs.embedded import EmbeddedCatalog
from catalogs.embedded.missions import S2_ARCHIVE_START, month_cutoff
from catalogs.embedded.sentinel1 import s1_acquisitions
from catalogs.embedded.sentinel2 import s2_acquisitions
from catalogs.embedded.writer import MARKER
from nyceo import paths
from nyceo.acquire import run_acquire
from nyceo.config import load_config
from nyceo.io import atomic_local_path, upload_file_atomic, write_bytes_atomic, write_json_atomic
from tests.conftest import REPO, write_config

TODAY = dt.date(2026, 12, 3)
BBOX = (-74.2149, 40.6066, -74.1543, 40.6519)   # the TINY Staten Island corner


def cli(*args: str, prefect_home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if prefect_home is not None:
        env["PREFECT_HOME"] = str(prefect_home)
    return subprocess.run([sys.executable, "-m", "nyceo.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def tiny_config(tmp_path: Path, **run: object) -> Path:
    return write_config(tmp_path, grid=dict(TINY["grid"]), acquire=dict(TINY["acquire"]),
                        catalog=dict(TINY["catalog"]), **({"run": run} if run else {}))


# --- which months can be processed --------------------------------------------------------------

def test_check_processable_month():
    assert paths.check_processable_month("2024-07", TODAY) == "2024-07"
    assert paths.check_processable_month("2026-12", TODAY) == "2026-12"          # the current month
    assert paths.check_processable_month(paths.FIRST_DATA_MONTH, TODAY) == paths.FIRST_DATA_MONTH
    with pytest.raises(ValueError, match=r"2027-01 is in the future.*2016-11 to 2026-12"):
        paths.check_processable_month("2027-01", TODAY)
    with pytest.raises(ValueError, match=r"2014-01 is before Sentinel-2 L2A.*2016-11 to 2026-12"):
        paths.check_processable_month("2014-01", TODAY)
    with pytest.raises(ValueError, match="not YYYY-MM"):
        paths.check_processable_month("2024-7", TODAY)
    # default "today" is the real UTC date
    assert paths.current_month_utc() == dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")


def _platforms(year: int, month: int) -> tuple[set[str], set[str]]:
    return ({a.item_id[:3] for a in s2_acquisitions(year, month)},
            {a.platform for a in s1_acquisitions(year, month)})


@pytest.mark.parametrize("year,month,s2,s1", [
    (2014, 1, set(), set()),                      # before Sentinel-1A's archive and Sentinel-2
    (2015, 8, set(), {"S1A"}),                    # Sentinel-2A flies, PC's L2A archive not yet
    (2016, 11, {"S2A"}, {"S1A", "S1B"}),          # the first L2A month over New York
    (2017, 2, {"S2A"}, {"S1A", "S1B"}),           # Sentinel-2B not launched
    (2017, 4, {"S2A", "S2B"}, {"S1A", "S1B"}),
    (2022, 1, {"S2A", "S2B"}, {"S1A"}),           # Sentinel-1B lost on 2021-12-23
    (2025, 2, {"S2B", "S2C"}, {"S1A"}),           # Sentinel-2C in Sentinel-2A's place
    (2025, 6, {"S2B", "S2C"}, {"S1A", "S1C"}),
])
def test_embedded_scenes_only_within_the_missions_lives(year, month, s2, s1):
    assert _platforms(year, month) == (s2, s1)


def test_embedded_first_s2_month_is_the_pipelines_first_month():
    first = next(f"{y:04d}-{m:02d}" for y in range(2014, 2018) for m in range(1, 13) if s2_acquisitions(y, m))
    assert first == paths.FIRST_DATA_MONTH == S2_ARCHIVE_START.strftime("%Y-%m")


def test_embedded_catalog_serves_nothing_before_the_archive_or_in_the_future(tmp_path):
    cat = EmbeddedCatalog(tmp_path, seed=5, bbox_lonlat=BBOX)
    for start, end in ((dt.datetime(2014, 1, 1), dt.datetime(2014, 2, 1)),
                       (dt.datetime(2031, 1, 1), dt.datetime(2031, 2, 1))):
        assert cat.search("sentinel-2-l2a", BBOX, start, end) == []
        assert cat.search("sentinel-1-rtc", BBOX, start, end) == []
    assert cat.search("cop-dem-glo-30", BBOX, dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1))  # static
    # the current month is cut at today 00:00 UTC: no scene after it, and the cut is in the unit's
    # marker (the unit is rebuilt once that day has passed)
    now = dt.datetime.now(dt.timezone.utc)
    cut = month_cutoff(now.year, now.month, now)
    assert cut is not None and month_cutoff(2024, 7, now) is None
    start = dt.datetime(now.year, now.month, 1, tzinfo=dt.timezone.utc)
    items = cat.search("sentinel-1-rtc", BBOX, start, start + dt.timedelta(days=31))
    assert all(it.datetime < cut for it in items)
    assert len(items) == len(s1_acquisitions(now.year, now.month, until=cut))
    marker = json.loads((cat.base / now.strftime("%Y-%m") / "sentinel-1-rtc" / MARKER).read_text())
    assert marker["until"] == cut.date().isoformat()


def test_acquire_of_a_month_without_sentinel2_is_a_typed_skip(tmp_path):
    cfg = load_config(tiny_config(tmp_path))
    out = run_acquire(cfg, "2015-08")
    assert out["status"] == "skipped" and out["reason"] == "no_s2_scenes"
    assert not Path(paths.stack_store(cfg, "2015-08")).exists()


# --- arguments checked before anything starts -------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["run", "--month", "2031-01"], "month 2031-01 is in the future"),
    (["run", "--month", "2014-01"], "before Sentinel-2 L2A"),
    (["run", "--month", "2024-13"], "not YYYY-MM"),
    (["backfill", "--start", "2024-05", "--end", "2024-01"], "after end"),
    (["backfill", "--start", "2026-01", "--end", "2099-12"], "in the future"),
    (["acquire", "--month", "2014-01"], "before Sentinel-2 L2A"),
    (["infer", "--month", "2031-01"], "in the future"),
    (["mosaic", "--month", "2031-01"], "in the future"),
])
def test_bad_month_fails_at_once_without_starting_prefect(tmp_path, args, message):
    home = tmp_path / "prefect-home"
    out = cli(*args, "-c", str(tiny_config(tmp_path)), prefect_home=home)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in out.stderr
    assert not home.exists()      # Prefect never started: no database, no server, no profile
    assert not (tmp_path / "outputs" / "grid").exists()


def test_missing_config_file_fails_at_once(tmp_path):
    home = tmp_path / "prefect-home"
    out = cli("run", "--month", "2024-07", "-c", str(tmp_path / "nope.yaml"), prefect_home=home)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    assert not home.exists()


# --- output roots that cannot be written ------------------------------------------------------

def _blocked_roots(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Output roots that fail for root too: a file, a folder under a file, a symlink loop."""
    a_file = tmp_path / "outputs-is-a-file"
    a_file.write_text("not a folder")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    return {"file": (a_file, "is a file, not a folder"),
            "under_file": (a_file / "outputs", f"lies under {a_file}, which is a file"),
            "loop": (loop / "outputs", "not a writable folder")}


@pytest.mark.parametrize("case", ["file", "under_file", "loop"])
def test_unwritable_output_root_is_named_with_the_fix(tmp_path, case):
    root, message = _blocked_roots(tmp_path)[case]
    cfg = load_config(tiny_config(tmp_path, output_root=str(root)))
    with pytest.raises(ValueError, match="run.output_root") as err:
        paths.check_output_root(cfg)
    assert message in str(err.value) and str(root) in str(err.value) and "set run.output_root to" in str(err.value)


def test_output_root_checked_by_the_cli_before_anything_starts(tmp_path):
    root, _ = _blocked_roots(tmp_path)["under_file"]
    config = tiny_config(tmp_path, output_root=str(root))
    for args in (["grid"], ["acquire", "--month", "2024-07"], ["run", "--month", "2024-07"]):
        home = tmp_path / f"prefect-home-{args[0]}"
        out = cli(*args, "-c", str(config), prefect_home=home)
        assert out.returncode == 2, out.stderr
        assert out.stderr.count("\n") == 1 and "run.output_root" in out.stderr and "Traceback" not in out.stderr
        assert not home.exists()


def test_mosaic_output_root_is_checked_too(tmp_path):
    root, message = _blocked_roots(tmp_path)["file"]
    raw = yaml.safe_load(tiny_config(tmp_path).read_text())
    raw["mosaic"]["output_root"] = str(root)
    path = tmp_path / "mosaic.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=f"mosaic.output_root '{root}' {message}"):
        paths.check_output_root(load_config(path))


def test_writable_output_root_is_created(tmp_path):
    cfg = load_config(tiny_config(tmp_path, output_root=str(tmp_path / "new" / "outputs")))
    paths.check_output_root(cfg)
    assert (tmp_path / "new" / "outputs").is_dir() and not list((tmp_path / "new" / "outputs").iterdir())


# --- file modes of atomic writes --------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_atomic_writes_get_the_umask_default_mode(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(str(tmp_path / "catalog.json"), {"a": 1})
        write_bytes_atomic(str(tmp_path / "bytes.bin"), b"x")
        with atomic_local_path(tmp_path / "cog.tif") as tmp:
            tmp.write_bytes(b"tif")
        upload_file_atomic(tmp_path / "bytes.bin", str(tmp_path / "sub" / "copy.bin"))
        plain = tmp_path / "plain.txt"
        plain.write_text("reference: what open() creates")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE(plain.stat().st_mode) == want
    for name in ("catalog.json", "bytes.bin", "cog.tif", "sub/copy.bin"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bytes.bin", "catalog.json", "cog.tif", "plain.txt", "sub"]
