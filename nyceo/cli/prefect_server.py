"""The temporary Prefect server of ``nyceo run`` / ``nyceo backfill``, tied to the command's life.

With no ``PREFECT_API_URL`` configured, Prefect 3 starts a temporary API server itself
(``prefect.server.api.server.SubprocessASGIServer``: ``subprocess.Popen([python, -m, uvicorn, …])``)
and stops it only from an ``atexit`` hook. A SIGKILL (OOM killer, ``kill -9``, a scheduler's hard
timeout) runs no hook, so that uvicorn process outlives the run as an orphan, holding its port
and the SQLite database of ``PREFECT_HOME``. Prefect offers no hook to change how it starts the
child, so the command starts the same server itself, through a tiny launcher that asks Linux to
send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``, kept across ``exec``), then
points Prefect at it for the run (settings context and ``os.environ``, so local dask workers
report to it too). The launcher exits at once if the parent died before the ``prctl`` call.
Elsewhere than Linux the server is started the same way without that guarantee.

The death signal follows the *thread* that started the child: start it from the main thread
(the CLI does), never from a worker thread that may end before the run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Iterator

# argv[1] = parent pid; argv[2:] = the command to exec once the death signal is armed.
LAUNCHER = """
import ctypes, os, signal, sys
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)  # the parent died before the signal was armed
os.execv(sys.argv[2], sys.argv[2:])
"""
ENV_MARKER = "NYCEO_TEMPORARY_PREFECT_SERVER"   # set to the URL while the command's own server runs
# Prefect waits PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s) counting only its own
# 0.1 s sleeps, i.e. longer in wall time; on a loaded machine start-up (database migrations) takes
# 30 s and more, so this waits that setting in wall-clock seconds, but at least:
MIN_STARTUP_S = 120.0


class PrefectServerError(RuntimeError):
    """The temporary Prefect server did not start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _uvicorn_argv(port: int) -> list[str]:
    """The command line Prefect 3.8 uses for its temporary server (SubprocessASGIServer)."""
    import prefect

    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


def _wait_healthy(proc: subprocess.Popen, url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PrefectServerError(f"the temporary Prefect server exited with code {proc.returncode} "
                                         f"before answering on {url}")
            try:
                if client.get(f"{url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise PrefectServerError(
        f"the temporary Prefect server did not answer on {url} within {timeout_s:.0f} s; raise "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS or run a Prefect server and export PREFECT_API_URL")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _drain_prefect_clients(timeout_s: float = 10.0) -> None:
    """Send the logs and events Prefect still queues while the server is up. Left queued, Prefect
    drains them at interpreter exit against the stopped server: connection retries that kept the
    command alive for ~70 s after its flow finished ("Error logging to API")."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=timeout_s, at_exit=False)
        except Exception:  # noqa: BLE001 - best effort: a lost log line never fails the command
            pass


@contextmanager
def temporary_prefect_server() -> Iterator[str | None]:
    """Yield the URL of this command's own temporary Prefect API (None: one is configured already)."""
    from prefect.settings import (
        PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, get_current_settings, temporary_settings,
    )

    if PREFECT_API_URL.value():
        yield None
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
           "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(os.getpid()), *_uvicorn_argv(port)], env=env)
    saved = {k: os.environ.get(k) for k in ("PREFECT_API_URL", ENV_MARKER)}
    try:
        _wait_healthy(proc, url, max(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()), MIN_STARTUP_S))
        os.environ.update({"PREFECT_API_URL": url, ENV_MARKER: url})
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        _drain_prefect_clients()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _stop(proc)
