"""An existing dask cluster: `dask scheduler` + two `dask worker` processes on loopback (real CLI)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client

from nyceo.cluster import dask_client, local_cluster_kwargs, map_blocks, workers_with_resource
from nyceo.config import DaskConfig

REPO = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Scheduler + a CPU worker + a worker advertising GPU=1, all separate processes."""
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    # the test module (block_worker) must import on the workers, as pytest imports it here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    logs = tmp_path_factory.mktemp("dask")
    common = ["--nthreads", "1", "--no-dashboard", "--local-directory", str(logs)]
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, cwd=REPO, stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen([DASK, "worker", addr, "--name", "cpu-0", *common], env=env, cwd=REPO,
                                  stdout=open(logs / "cpu.log", "w"), stderr=subprocess.STDOUT))
    procs.append(subprocess.Popen([DASK, "worker", addr, "--name", "gpu-0", "--resources", "GPU=1", *common],
                                  env=env, cwd=REPO, stdout=open(logs / "gpu.log", "w"), stderr=subprocess.STDOUT))
    try:
        deadline = time.time() + 90
        while True:
            try:
                with Client(addr, timeout="5s") as c:
                    c.wait_for_workers(2, timeout=60)
                    break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def block_worker(block_id: str, scale: int) -> dict:
    """A block-mapped function: where it ran and a value computed from its input."""
    from distributed import get_worker

    return {"block": block_id, "pid": os.getpid(), "worker": get_worker().name, "value": len(block_id) * scale}


def test_local_cluster_sized_to_machine():
    kw = local_cluster_kwargs(DaskConfig(threads_per_worker=1))
    assert kw["n_workers"] == len(os.sched_getaffinity(0)) and kw["processes"] is True
    assert local_cluster_kwargs(DaskConfig(n_workers=3, threads_per_worker=2))["n_workers"] == 3


def test_unreachable_scheduler_is_a_clear_error():
    with pytest.raises(ConnectionError, match="dask.scheduler_address"):
        with dask_client(DaskConfig(scheduler_address=f"tcp://127.0.0.1:{free_port()}"), connect_timeout_s=2):
            pass


def test_blocks_mapped_onto_existing_cluster(dask_cluster):
    blocks = [f"b{i:03d}_000" for i in range(8)]
    seen = []
    with dask_client(DaskConfig(scheduler_address=dask_cluster)) as client:
        out = map_blocks(client, block_worker, blocks, 3, key_of=str, on_progress=lambda d, t, k: seen.append((d, t)))
        assert sorted(workers_with_resource(client, "GPU")) == [
            a for a, w in client.scheduler_info(n_workers=-1)["workers"].items() if w["name"] == "gpu-0"]
        gpu_only = map_blocks(client, block_worker, blocks[:4], 1, resources={"GPU": 1})
    assert list(out) == blocks and all(out[b]["value"] == len(b) * 3 for b in blocks)
    assert {r["pid"] for r in out.values()}.isdisjoint({os.getpid()})  # ran in the worker processes
    assert seen[-1] == (8, 8) and [d for d, _ in seen] == list(range(1, 9))
    assert {r["worker"] for r in gpu_only.values()} == {"gpu-0"}  # dask resources route to the GPU worker
