"""Atomic, input-keyed writes: skip identical inputs, rewrite changed ones, survive crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from nyceo.io import sha256_file
from nyceo.mosaic import layout
from nyceo.mosaic.cog import INPUT_KEY_TAG
from nyceo.mosaic.stage import mosaic_area
from tests.conftest import REPO
from tests.test_mosaic_helpers import make_config, mosaic_manhattan, write_pred_store

MONTH = "2024-07"


@pytest.fixture()
def manhattan(tmp_path):
    return mosaic_manhattan(tmp_path, MONTH)


def _snapshot(files: dict[str, Path]) -> dict[str, tuple[str, int]]:
    return {k: (sha256_file(p), p.stat().st_mtime_ns) for k, p in files.items()}


def _leftovers(cfg) -> list[Path]:
    root = Path(layout.output_root(cfg))
    return [p for p in root.rglob("*") if ".staging-" in str(p) or p.name.endswith(".tmp")]


def test_identical_inputs_are_not_rewritten_and_changed_inputs_are(manhattan):
    cfg, first, files = manhattan
    before = _snapshot(files)
    again = mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan")
    assert again.skipped and again.input_key == first.input_key
    assert _snapshot(files) == before
    # New prediction store contents (another infer run) -> new key -> rewritten.
    write_pred_store(cfg, MONTH, "buildings_nyc", seed=4, provenance_extra={"created_utc": "later"})
    third = mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan")
    assert not third.skipped and third.input_key != first.input_key
    with rasterio.open(files["class"]) as ds:
        assert ds.tags()[INPUT_KEY_TAG] == third.input_key
    # A changed mosaic setting also changes the key.
    cfg2 = make_config(Path(layout.output_root(cfg)).parent, ["Manhattan"], compression="DEFLATE")
    assert not mosaic_area(cfg2, MONTH, "buildings_nyc", "manhattan").skipped
    # A deleted output is rebuilt even though the others are current.
    files["thumbnail"].unlink()
    assert not mosaic_area(cfg2, MONTH, "buildings_nyc", "manhattan").skipped
    assert files["thumbnail"].is_file() and not _leftovers(cfg)


def test_exception_mid_write_keeps_previous_files_and_leaves_no_partial(manhattan):
    cfg, first, files = manhattan
    before = _snapshot(files)
    store = write_pred_store(cfg, MONTH, "buildings_nyc", seed=5, provenance_extra={"run": 2})
    # Corrupt one confidence chunk: the class COG is staged, then reading confidence fails.
    chunk = next(p for p in sorted(Path(store, "confidence").rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"not a zstd chunk")
    with pytest.raises(Exception):
        mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan")
    assert _snapshot(files) == before
    assert not _leftovers(cfg)


KILLED_RUN = """
import sys
from nyceo.config import load_config
from nyceo.mosaic.stage import mosaic_area
mosaic_area(load_config(sys.argv[1]), sys.argv[2], "buildings_nyc", "manhattan")
"""


def test_killed_process_mid_write_leaves_previous_good_file(manhattan, tmp_path):
    cfg, first, files = manhattan
    before = _snapshot(files)
    write_pred_store(cfg, MONTH, "buildings_nyc", seed=6, provenance_extra={"run": 3})
    cog_dir = files["class"].parent
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "config.yaml"), MONTH], cwd=REPO)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            staged = [p for d in cog_dir.glob(".staging-manhattan--*") for p in d.glob("*.tif")]
            if staged:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it could be killed"
    assert _snapshot(files) == before  # final names untouched, previous good files intact
    assert cog_validate(str(files["class"]))[0]
    # The next run removes the dead run's staging folder and publishes the new inputs.
    after = mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan")
    assert not after.skipped and after.input_key != first.input_key
    assert not _leftovers(cfg)
