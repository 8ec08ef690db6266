"""A real STAC API on 127.0.0.1 for tests: stac-fastapi-geoparquet 0.0.7 in the separate
virtualenv ``.venv-stac`` (``make stac-server-env``), serving items from a stac-geoparquet file.

``serve_items(items, folder)`` writes ``items.parquet`` with rustac (inside .venv-stac), starts
uvicorn on a free port as a subprocess, waits until ``/`` answers, yields the root URL and stops
the server on exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

import pystac
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
STAC_VENV = REPO / ".venv-stac"
STAC_PYTHON = STAC_VENV / "bin" / "python"


def write_parquet(items: Iterable[pystac.Item], folder: Path) -> Path:
    """items.parquet (stac-geoparquet) written by rustac in the server's virtualenv."""
    if not STAC_PYTHON.exists():
        raise RuntimeError(f"{STAC_VENV} is missing; run `make stac-server-env` (make test does it)")
    ndjson = folder / "items.ndjson"
    ndjson.write_text("".join(json.dumps(it.to_dict(transform_hrefs=False)) + "\n" for it in items))
    out = folder / "items.parquet"
    code = (
        "import json, sys, rustac; "
        "items = [json.loads(l) for l in open(sys.argv[1])]; "
        "rustac.write_sync(sys.argv[2], items)"
    )
    subprocess.run([str(STAC_PYTHON), "-c", code, str(ndjson), str(out)], check=True,
                   capture_output=True, timeout=120)
    return out


@contextmanager
def serve_items(items: Iterable[pystac.Item], folder: Path, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve ``items`` from a real STAC API; yields its root URL."""
    parquet = write_parquet(items, folder)
    port = free_port()
    env = {**os.environ, "STAC_FASTAPI_GEOPARQUET_HREF": str(parquet), "HOME": os.environ.get("HOME", "/root")}
    log = open(folder / "uvicorn.log", "w")
    proc = subprocess.Popen(
        [str(STAC_VENV / "bin" / "uvicorn"), "stac_fastapi.geoparquet.main:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"STAC server exited early: {(folder / 'uvicorn.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"STAC server at {url} not ready after {timeout_s} s")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
