"""An existing dask cluster: `dask scheduler` + two `dask worker` processes on loopback (real CLI).

The workers are started the way a user starts them for Prefect work: with ``PREFECT_API_URL`` (here
the test session's Prefect API, which the flow uses too) in their environment. prefect-dask also
ships the flow's settings with each task; the workers' own URL is what counts when the flow has none
(a flow on a temporary server), see ``flows.stages.dask_task_runner``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from distributed import Client

from benchmarks.rerun_bench import TINY
from nyceo.cluster import dask_client, local_cluster_kwargs
from nyceo.config import DaskConfig
from tests.conftest import free_port, write_config

REPO = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).parent / "dask")


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory, prefect_api):
    """Scheduler + two workers, all separate processes (the real `dask` CLI)."""
    from flows.steps.dask import current_api_url

    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    # the workers import nyceo/tasks from this checkout; Prefect tasks run on the workers must
    # reach the flow's API (a user exports PREFECT_API_URL likewise)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
           "PREFECT_API_URL": current_api_url()}
    logs = tmp_path_factory.mktemp("dask")
    common = ["--nthreads", "1", "--no-dashboard", "--local-directory", str(logs)]
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, cwd=REPO, stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    procs.append(subprocess.Popen([DASK, "worker", addr, "--name", "cpu-0", *common], env=env, cwd=REPO,
                                  stdout=open(logs / "cpu.log", "w"), stderr=subprocess.STDOUT))
    procs.append(subprocess.Popen([DASK, "worker", addr, "--name", "cpu-1", *common],
                                  env=env, cwd=REPO, stdout=open(logs / "cpu1.log", "w"), stderr=subprocess.STDOUT))
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


STACK_ARRAYS = ("s2", "s1", "dem", "s2_valid", "s1_valid", "s2_date", "s1_date")


def tiny_config(folder: Path, embedded: Path, **dask: object) -> Path:
    """TINY (four Staten Island chips, one-chip blocks) with a shared embedded city root."""
    folder.mkdir()
    return write_config(folder, grid=dict(TINY["grid"]), acquire=dict(TINY["acquire"]),
                        catalog={**TINY["catalog"], "embedded_root": str(embedded)}, dask=dict(dask))


def blocks_reported(since_s: float) -> list[str]:
    """Block ids of the completed acquire-block task runs (named ``acquire-<block_id>-<suffix>``)
    that the Prefect API has recorded since ``since_s`` (epoch seconds)."""
    import datetime as dt

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName, TaskRunFilterStartTime
    from prefect.client.schemas.sorting import TaskRunSort

    after = dt.datetime.fromtimestamp(since_s, dt.timezone.utc)
    runs = get_client(sync_client=True).read_task_runs(task_run_filter=TaskRunFilter(
        name=TaskRunFilterName(like_="acquire-b"), start_time=TaskRunFilterStartTime(after_=after)),
        sort=TaskRunSort.NAME_ASC, limit=100)
    names = [r.name for r in runs if r.state and r.state.is_completed()]
    return sorted(m.group(1) for n in names if (m := re.match(r"acquire-(b\d{3}_\d{3})-", n)))


def test_acquire_stage_runs_on_existing_cluster(dask_cluster, tmp_path):
    """The monthly flow (grid + acquire) with dask.scheduler_address: the blocks run on the external
    workers and the stack equals, array for array, a serial run in this process."""
    from flows.monthly import monthly_run
    from nyceo import paths
    from nyceo.acquire.contract import acquire_status
    from nyceo.acquire.stage import run_acquire
    from nyceo.config import load_config

    month, emb = "2024-07", tmp_path / "embedded"
    serial = load_config(tiny_config(tmp_path / "serial", emb))
    assert run_acquire(serial, month)["status"] == "done"  # also generates the embedded city once
    cfg = tiny_config(tmp_path / "cluster", emb, scheduler_address=dask_cluster)
    with Client(dask_cluster) as client:
        workers = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        client.get_task_stream()  # registers the scheduler's task-stream plugin before the run
        t0 = time.time()
        summary = monthly_run(month=month, config_path=str(cfg), stages=["grid", "acquire"])
        stream = client.get_task_stream(start=t0)
    acq = summary["stages"]["acquire"]
    assert summary["status"] == "done" and acq["status"] == "done" and acq["blocks_done"] == 4
    ran = [r for r in stream if r.get("status") == "OK" and r["key"].startswith("acquire_block_task-")]
    assert len(ran) == 4, f"expected the 4 acquisition blocks on the external scheduler, saw {stream}"
    assert {r["worker"] for r in ran} <= set(workers)  # ...executed by its two worker processes
    # the workers' Prefect task runs reported to the flow's API, not to temporary servers of their own
    plan = json.loads(next((Path(acq["store"]).parent / "acquire").glob("*/plan.json")).read_text())
    assert blocks_reported(t0) == sorted(plan["blocks"])
    config = load_config(cfg)
    assert acquire_status(config, month).state == "current"
    a = zarr.open_group(paths.stack_store(config, month), mode="r")
    b = zarr.open_group(paths.stack_store(serial, month), mode="r")
    for name in STACK_ARRAYS:
        np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=f"{name} differs from the serial run")
    valid = a["s2_valid"][...]
    for r in range(2):  # every chip of the area was written, with clear observations
        for c in range(2):
            assert (valid[:, r * 224:(r + 1) * 224, c * 224:(c + 1) * 224] == 1).mean() > 0.5
