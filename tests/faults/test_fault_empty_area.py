"""An AOI that is empty after clipping (Manhattan with grid.min_land_fraction 1.0: no chip is all land),
through `nyceo grid` and `nyceo acquire`: one line naming the settings, the largest land fraction found
and the fix, exit 1, no traceback; the grid index written earlier is untouched. (Before: `nyceo grid`
wrote an empty index and reported "0 chips".)"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import yaml

from tests.conftest import REPO, write_config


def test_empty_area_is_refused_with_the_fix_and_keeps_the_earlier_index(tmp_path):
    path = write_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["grid"].update(boroughs=["Manhattan"], min_land_fraction=1.0)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    index = tmp_path / "outputs" / "grid" / "chips.parquet"
    index.parent.mkdir(parents=True)
    index.write_bytes(b"an earlier grid index")
    before = hashlib.sha256(index.read_bytes()).hexdigest()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    for args, prefix in ((["grid"], "grid failed: "), (["acquire", "--month", "2024-07"], "acquire 2024-07 failed: ")):
        res = subprocess.run([sys.executable, "-m", "nyceo.cli", *args, "-c", str(path)], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=120)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        line = next(x for x in res.stderr.splitlines() if x.startswith(prefix))
        assert "the area is empty" in line and "grid.boroughs ['Manhattan']" in line
        assert "grid.min_land_fraction 1.0" in line and "largest land fraction of a chip there is 0.99" in line
        assert "Lower grid.min_land_fraction" in line
    assert hashlib.sha256(index.read_bytes()).hexdigest() == before
    assert not list((tmp_path / "outputs").rglob("*.zarr"))  # no store started
