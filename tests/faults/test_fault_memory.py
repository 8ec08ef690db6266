"""A configuration that would exceed memory is refused up front, through the real CLI: the estimate,
the part that is too large and the setting to change, exit 2, before Prefect or any stage starts;
``run.memory_limit_gb`` overrides the machine's available memory (0 = no check)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nyceo.config import load_config
from nyceo.memory import GIB, acquire_estimate, available_bytes, check_memory, infer_estimate
from tests.conftest import REPO, write_config
from tests.faults.test_fault_config import tree_hashes


def cli(*args: str, prefect_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(prefect_home)}
    return subprocess.run([sys.executable, "-m", "nyceo.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_demo_fits_and_the_estimate_grows_with_the_block(tmp_path):
    cfg = load_config(write_config(tmp_path))
    small = infer_estimate(cfg).total_bytes
    assert small < available_bytes(), "the demo configuration itself is refused on this machine"
    check_memory(cfg, ["acquire", "infer"], workers=2)  # no error
    big = load_config(write_config(tmp_path, infer={"block_size_chips": 16}))
    assert infer_estimate(big).total_bytes > small + 2 * GIB  # (16+2)^2 chips x 7 MB x 2 (prefetch) = 4.4 GB
    nopre = load_config(write_config(tmp_path, infer={"block_size_chips": 16, "prefetch_blocks": False}))
    assert infer_estimate(nopre).parts["stack block"] * 2 == infer_estimate(big).parts["stack block"]
    acq = load_config(write_config(tmp_path, grid={"block_size_chips": 16}))
    assert acquire_estimate(acq, 4).total_bytes > 4 * acquire_estimate(acq, 1).parts["blocks in flight"]


@pytest.mark.parametrize("command, section, setting", [
    ("infer", "infer", "infer.block_size_chips"),
    ("run", "infer", "infer.block_size_chips"),
    ("acquire", "grid", "grid.block_size_chips"),
])
def test_absurd_block_size_is_refused_with_the_estimate_and_nothing_starts(tmp_path, command, section, setting):
    path = write_config(tmp_path, **{section: {"block_size_chips": 400}})
    out = tmp_path / "outputs"
    (out / "2024-06").mkdir(parents=True)  # an earlier month's outputs: untouched
    (out / "2024-06" / "run_summary.json").write_text('{"month": "2024-06"}')
    before = tree_hashes(out)
    home = tmp_path / "prefect-home"
    res = cli(command, "--month", "2024-07", "-c", str(path), prefect_home=home)
    assert res.returncode == 2, res.stderr
    assert "would need about" in res.stderr and " GB at peak" in res.stderr, res.stderr
    assert f"lower {setting}" in res.stderr and "run.memory_limit_gb" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not home.exists() and tree_hashes(out) == before  # Prefect never started, nothing written


def test_memory_limit_overrides_the_check(tmp_path):
    huge = {"block_size_chips": 400}
    with pytest.raises(ValueError, match=r"run.memory_limit_gb \(1.0 GB\)"):
        check_memory(load_config(write_config(tmp_path, run={"memory_limit_gb": 1.0})), ["infer"])
    check_memory(load_config(write_config(tmp_path, infer=huge, run={"memory_limit_gb": 0})), ["infer"])
    est = infer_estimate(load_config(write_config(tmp_path, infer=huge))).total_bytes
    check_memory(load_config(write_config(tmp_path, infer=huge, run={"memory_limit_gb": est / GIB + 1})), ["infer"])
