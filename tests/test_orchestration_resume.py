"""Kill the monthly flow (SIGKILL, whole process group) once acquisition blocks are recorded, run it
again, and compare sha256 of every output with an uninterrupted run (acquire stage, tiny area)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from benchmarks.rerun_bench import TINY, output_hashes
from tests.conftest import write_config

REPO = Path(__file__).resolve().parent.parent
CODE = "import sys; from flows.monthly import monthly_run; monthly_run('2024-07', sys.argv[1], stages=['grid', 'acquire'])"


def tiny_config(tmp_path: Path, name: str, embedded: Path) -> Path:
    d = tmp_path / name
    d.mkdir()
    cfg = write_config(d, **{k: dict(v) for k, v in TINY.items()}, dask={"n_workers": 2})
    raw = yaml.safe_load(cfg.read_text())
    raw["catalog"]["embedded_root"] = str(embedded)
    cfg.write_text(yaml.safe_dump(raw))
    return cfg


def test_kill_and_resume_is_byte_identical(tmp_path):
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1720000000", "PREFECT_HOME": str(tmp_path / "ph")}
    emb = tmp_path / "embedded"
    cfg = tiny_config(tmp_path, "run", emb)  # one config: output_root is part of the config hash
    out = tmp_path / "run" / "outputs"
    subprocess.run([sys.executable, "-c", CODE, str(cfg)], cwd=REPO, env=env, check=True, capture_output=True)
    out.rename(tmp_path / "clean")  # the uninterrupted run's outputs (and its cache) move aside
    proc = subprocess.Popen([sys.executable, "-c", CODE, str(cfg)], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    blocks = out / "2024-07" / "acquire" / "blocks"
    deadline = time.time() + 300
    while not (blocks.exists() and list(blocks.glob("*.json"))):
        assert proc.poll() is None and time.time() < deadline, "no block recorded before the run ended"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = len(list(blocks.glob("*.json")))
    assert 1 <= n_before < 4 and not (blocks.parent / "complete.json").exists()  # really interrupted midway
    subprocess.run([sys.executable, "-c", CODE, str(cfg)], cwd=REPO, env=env, check=True, capture_output=True)
    a, b = output_hashes(tmp_path / "clean"), output_hashes(out)
    assert any(k.startswith("2024-07/stack.zarr/") for k in a)
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differing, f"outputs differ after kill-and-resume: {differing}"
