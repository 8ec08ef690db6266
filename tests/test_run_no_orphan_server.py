"""`nyceo run` killed with SIGKILL leaves no temporary Prefect server (uvicorn) behind.

Prefect's own temporary server is stopped only by an atexit hook, which a SIGKILL never runs; the
command's own server (nyceo/cli/prefect_server.py) is armed with PR_SET_PDEATHSIG. Real processes,
real signals; the test finds the server by its command line and its PREFECT_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.rerun_bench import TINY
from tests.conftest import REPO, write_config

SERVER_APP = b"prefect.server.api.server:create_app"


def processes_of(prefect_home: Path, needle: bytes = b"") -> list[int]:
    """Live (not zombie) processes whose PREFECT_HOME is ``prefect_home`` and whose command line
    contains ``needle``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle not in (proc / "cmdline").read_bytes():
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if f"PREFECT_HOME={prefect_home}".encode() in env and state != "Z":
            found.append(int(proc.name))
    return found


def servers_of(prefect_home: Path) -> list[int]:
    """Live uvicorn Prefect API servers of ``prefect_home``."""
    return processes_of(prefect_home, SERVER_APP)


def healthy(pid: int) -> bool:
    """Whether the server of process ``pid`` answers its health check (port from its command line)."""
    import httpx

    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        port = int(argv[argv.index(b"--port") + 1])
        return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
    except (OSError, ValueError, httpx.TransportError):
        return False


def wait_for(predicate, timeout_s: float, step_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step_s)
    return predicate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux")
def test_sigkilled_run_leaves_no_prefect_server(tmp_path):
    cfg = write_config(tmp_path, grid=dict(TINY["grid"]), acquire=dict(TINY["acquire"]),
                       catalog=dict(TINY["catalog"]))
    home = tmp_path / "prefect-home"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PYTHONPATH": str(REPO)}
    env.pop("PREFECT_API_URL", None)
    run = subprocess.Popen([sys.executable, "-m", "nyceo.cli", "run", "-m", "2024-07", "-c", str(cfg),
                            "--no-progress"], cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pids = wait_for(lambda: [p for p in servers_of(home) if healthy(p)], timeout_s=240)
        assert pids, "nyceo run never started its temporary Prefect server"
        # the flow is under way (its grid stage wrote the chip index) when the run is killed
        assert wait_for(lambda: (tmp_path / "outputs" / "grid" / "chips.parquet").exists(), timeout_s=240)
        assert run.poll() is None, "the run ended before it could be killed"
        run.send_signal(signal.SIGKILL)
        run.wait()
        left = wait_for(lambda: not servers_of(home), timeout_s=15) or servers_of(home)
        assert left is True, f"temporary Prefect server(s) {left} outlived the SIGKILLed run"
        # nor does anything else of the run (dask workers, resource tracker) stay behind
        rest = wait_for(lambda: not processes_of(home), timeout_s=15) or processes_of(home)
        assert rest is True, f"processes {rest} of the SIGKILLed run are still alive"
    finally:
        if run.poll() is None:
            run.kill()
        for pid in processes_of(home):   # do not leak any if an assertion failed
            os.kill(pid, signal.SIGKILL)
