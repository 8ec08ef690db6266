"""A misspelt configuration key, through the real CLI: one clear error naming the key, the file and the
likely fix, exit 2, before Prefect or any stage starts; the outputs of earlier months are untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, write_config


def cli(*args: str, prefect_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT_HOME": str(prefect_home)}
    return subprocess.run([sys.executable, "-m", "nyceo.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def tree_hashes(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where, typo, expected", [
    (("infer",), "batch_sise", "infer.batch_size"),
    (("infer", "adapters", "lulc_nyc"), "sorce", "infer.adapters.lulc_nyc.source"),
    (("mosaic",), "compresion", "mosaic.compression"),
])
def test_misspelt_key_is_named_with_the_fix_and_nothing_starts(tmp_path, where, typo, expected):
    path = write_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    node = raw
    for part in where:
        node = node[part]
    node[typo] = node.pop(expected.rsplit(".", 1)[1], 4)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = Path(raw["run"]["output_root"])
    earlier = out / "2024-06"  # an earlier month's outputs (any bytes): must survive untouched
    (earlier / "cog" / "lulc_nyc").mkdir(parents=True)
    (earlier / "cog" / "lulc_nyc" / "nyc.tif").write_bytes(os.urandom(4096))
    (earlier / "run_summary.json").write_text('{"month": "2024-06"}')
    before = tree_hashes(out)
    home = tmp_path / "prefect-home"
    for args in (["run", "--month", "2024-07"], ["acquire", "--month", "2024-07"], ["status"]):
        res = cli(*args, "-c", str(path), prefect_home=home)
        assert res.returncode == 2, (args, res.stderr)
        key = ".".join([*where, typo])
        assert f"unknown key '{key}': did you mean '{expected}'?" in res.stderr, res.stderr
        assert str(path) in res.stderr and "Traceback" not in res.stderr
    assert not home.exists()            # Prefect never started
    assert tree_hashes(out) == before   # nothing written, nothing lost
