"""A full disk, through `nyceo acquire` on one chip: run.output_root on a small tmpfs that already holds an
earlier month. The run ends in one line naming the full device, the output root and the fix (exit 1),
publishes nothing, keeps the earlier month byte for byte, and the same command finishes once there is
room. Needs root (mount); skipped where mounting is not allowed."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from catalogs.static import write_static_catalog
from nyceo.acquire.testing import S2Scene, write_scenes
from nyceo.grid import Lattice, parse_chip_id
from tests.conftest import REPO

CHIP = "r0220_c0265"
D = dt.date


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}); the full-disk test needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def acquire(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nyceo.cli", "acquire", "--month", "2024-07", "-c", str(config)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_full_disk_is_named_keeps_earlier_outputs_and_resumes(small_disk, tmp_path):
    minx, miny, maxx, maxy = Lattice(0.0, 5_017_600.0, 224, 10.0).chip_bounds(*parse_chip_id(CHIP))
    items = write_scenes(tmp_path / "scenes", [(minx - 80, miny - 80, maxx + 80, maxy + 80)],
                         [S2Scene(D(2024, 7, d)) for d in (8, 13, 18, 23)], [D(2024, 7, d) for d in (5, 11, 17, 29)])
    catalog = write_static_catalog(items, tmp_path / "scenes", "disk", "seeded scenes")
    out = small_disk / "outputs"
    earlier = out / "2024-06" / "cog" / "lulc_nyc"
    earlier.mkdir(parents=True)
    (earlier / "nyc.tif").write_bytes(os.urandom(300_000))       # an earlier month's output
    before = tree_hashes(out)
    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    raw.pop("train", None)
    raw["run"] = {"name": "disk", "output_root": str(out)}
    raw["catalog"] = {"kind": "static", "url": str(catalog), "signing": "none"}
    raw["grid"]["block_size_chips"] = 1
    raw["acquire"] = {"chip_ids": [CHIP]}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))

    res = acquire(config)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    line = next(x for x in res.stderr.splitlines() if x.startswith("acquire 2024-07 failed"))
    assert "no space left on the device" in line and str(out) in line and "run the same command again" in line
    assert not (out / "2024-07" / "stack.zarr").exists() and not (out / "2024-07" / "stack.zarr.current").exists()
    after = tree_hashes(out)
    assert {k: after.get(k) for k in before} == before             # the earlier month is intact

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    res = acquire(config)
    assert res.returncode == 0, res.stderr
    assert (out / "2024-07" / "stack.zarr.current").is_file() and (out / "2024-07" / "stack.zarr").is_dir()
    assert {k: v for k, v in tree_hashes(out).items() if k in before} == before
