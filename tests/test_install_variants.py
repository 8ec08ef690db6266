"""`make install TORCH=cpu|cuda|rocm`: the pip lines each build runs (make -n; nothing is downloaded)."""

from __future__ import annotations

import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import REPO


def make(*args: str, dry: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["make", *(["-n"] if dry else []), "install", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def pip_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if re.search(r"/bin/pip install .* -c constraints", line)]


def pins(name: str) -> dict[str, str]:
    lines = (REPO / name).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


@pytest.mark.parametrize("torch_build, extra, request_, index", [
    ("cpu", [], "torch==2.13.0+cpu", None),
    ("cuda", [], "torch==2.13.0", None),
    ("cuda", ["TORCH_INDEX=https://wheels.test/whl/cu128"], "torch==2.13.0+cu128", "https://wheels.test/whl/cu128"),
    ("rocm", ["TORCH_INDEX=https://wheels.test/whl/rocm7.1"], "torch==2.13.0+rocm7.1", "https://wheels.test/whl/rocm7.1"),
])
def test_each_build_installs_its_torch_under_its_constraints(tmp_path, torch_build, extra, request_, index):
    res = make(f"TORCH={torch_build}", f"VENV={tmp_path}/venv", *extra)
    assert res.returncode == 0, res.stderr
    torch_line, lock_line = pip_lines(res.stdout)
    for line in (torch_line, lock_line):
        assert f"-c constraints-{torch_build}.txt" in line
        assert (f"--extra-index-url {index}" in line) == bool(index)
    assert f'"{request_}"' in torch_line and "-r requirements.lock" in lock_line
    check = {"cpu": "not (torch.version.cuda or torch.version.hip)", "cuda": "bool(torch.version.cuda)",
             "rocm": "bool(torch.version.hip)"}[torch_build]
    assert f"sys.exit(0 if {check} else" in res.stdout
    assert f"touch {tmp_path}/venv/.installed-{torch_build}" in res.stdout


def test_rocm_without_index_and_unknown_builds_are_refused(tmp_path):
    res = make("TORCH=rocm", f"VENV={tmp_path}/v")
    assert res.returncode != 0 and "TORCH=rocm needs TORCH_INDEX=" in res.stderr
    res = make("TORCH=gpu", f"VENV={tmp_path}/v")
    assert res.returncode != 0 and "TORCH must be cpu, cuda or rocm (got 'gpu')" in res.stderr


def test_a_venv_holds_one_build(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed-cpu").touch()
    for tool in ("python", "pip"):  # stand-ins that only record a call: a broken guard installs nothing
        (venv / "bin" / tool).write_text(f"#!/bin/sh\ntouch {tmp_path}/called-{tool}\nexit 1\n")
        (venv / "bin" / tool).chmod(0o755)
    res = make("TORCH=cuda", f"VENV={venv}", dry=False)  # stops at the guard, before any pip call
    assert res.returncode != 0
    assert f"{venv} holds the cpu torch build: run 'make clean' first" in res.stdout
    assert not list(tmp_path.glob("called-*")) and not (venv / ".installed-cuda").exists()


def test_lock_leaves_torch_to_the_build_constraints():
    lock = pins("requirements.lock")
    assert "torch" not in lock and lock["torchvision"] == "0.28.0"
    assert pins("constraints-cpu.txt") == {"torch": "2.13.0+cpu"}
    assert version("torch") == "2.13.0+cpu"  # this environment is the default build
    cuda = pins("constraints-cuda.txt")
    assert cuda["torch"] == "2.13.0" and "nvidia-cudnn-cu13" in cuda and "triton" in cuda
    lowered = {k.lower().replace("_", "-") for k in lock}
    assert not {k.lower() for k in cuda} & lowered  # nothing pinned twice (no conflicting pins)
    assert pins("constraints-rocm.txt") == {"torch": "2.13.0"}
    assert Path(REPO / "constraints.txt").exists() is False
