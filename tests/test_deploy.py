"""`prefect deploy --all` against a real Prefect server on 127.0.0.1, run by real process workers.

Starts `prefect server start` (own PREFECT_HOME, SQLite), creates the CPU and GPU process work
pools, deploys prefect.yaml, triggers `nyc-monthly` for one month with the grid stage only (a tiny,
cheap run), lets `prefect worker start --run-once` execute it, and checks the outputs on disk.
Then the production route to the GPU pool: `nyc-monthly` with ``infer_deployment`` set hands
inference to the `nyc-infer` deployment, which a worker of the `nyc-gpu` pool (a second real
process worker, on CPU here) picks up, and continues to mosaic once its stores are published.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port, write_config

REPO = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).parent / "prefect")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.time() < deadline, "prefect server did not become healthy"
            time.sleep(0.5)
        yield api, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cli(env, *args, timeout=180):
    out = subprocess.run([PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def deployed(server):
    """The server with both process pools, the `gpu` tag limit and prefect.yaml's deployments."""
    api, env = server
    for pool in ("nyc-cpu", "nyc-gpu"):
        cli(env, "work-pool", "create", pool, "--type", "process")
    cli(env, "concurrency-limit", "create", "gpu", "1")
    # `prefect deploy --all` itself exits 1 on a 3.8.8 client/server mismatch (see flows/deploy.py):
    # the wrapper is the same Prefect CLI with that one request fixed.
    out = subprocess.run([sys.executable, "-m", "flows.deploy", "--no-prompt", "deploy", "--all"], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return api, env


def stop_worker(proc: subprocess.Popen) -> None:
    """Stop a background worker and its flow-run processes; SIGKILL when SIGTERM is not enough. Measured
    under load: `prefect worker start` forwards SIGTERM as SIGINT and the worker kept polling (and picked
    up the next test's run) for over 30 s, so a worker left alive would break the tests after it."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_final(api: str, run_id: str, timeout_s: float = 120) -> dict:
    deadline = time.time() + timeout_s
    while True:
        state = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]
        if state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.time() > deadline:
            return state
        time.sleep(1)


def test_deploy_all_and_run_monthly_on_a_worker(deployed, tmp_path):
    api, env = deployed
    deps = {d["name"]: d for d in httpx.post(f"{api}/deployments/filter", json={}).json()}
    assert set(deps) >= {"nyc-monthly", "nyc-backfill", "nyc-infer"}
    assert deps["nyc-monthly"]["work_pool_name"] == "nyc-cpu" and deps["nyc-infer"]["work_pool_name"] == "nyc-gpu"
    sched = deps["nyc-monthly"]["schedules"][0]["schedule"]
    assert sched["cron"] == "0 6 5 * *" and sched["timezone"] == "America/New_York"
    assert deps["nyc-monthly"]["parameters"]["month"] is None  # previous month, New York time
    assert set(deps["nyc-backfill"]["parameter_openapi_schema"]["required"]) == {"start", "end"}

    cfg = write_config(tmp_path, grid={"boroughs": ["Staten Island"]})
    params = {"month": "2024-07", "config_path": str(cfg), "stages": ["grid"], "infer_deployment": None}
    out = cli(env, "deployment", "run", "nyc-monthly/nyc-monthly", "--params", json.dumps(params))
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    cli(env, "worker", "start", "--pool", "nyc-cpu", "--run-once", timeout=300)

    state = wait_final(api, run_id)
    assert state["type"] == "COMPLETED", state
    summary = json.loads((tmp_path / "outputs" / "2024-07" / "run_summary.json").read_text())
    assert summary["status"] == "done" and summary["stages"]["grid"]["chips"] > 0
    assert (tmp_path / "outputs" / "grid" / "chips.parquet").is_file()


def test_monthly_hands_inference_to_a_gpu_pool_worker_and_continues_to_mosaic(deployed, tmp_path):
    """The production route: nyc-monthly (nyc-cpu worker) -> run_deployment(nyc-infer) -> a nyc-gpu worker
    predicts and publishes the stores -> the monthly flow continues to mosaic. Two real process workers."""
    from benchmarks.rerun_bench import TINY
    from nyceo import contract
    from nyceo.config import load_config
    from nyceo.infer.contract import current_pred

    api, env = deployed
    env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}  # default 10 s: the test would mostly wait
    # two Staten Island chips in one block (one block to acquire, predict and mosaic) and two adapters
    # (buildings, lulc: TiM's token generation would triple the infer run's time)
    adapters = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["infer"]["adapters"]
    cfg_path = write_config(tmp_path, grid=TINY["grid"], catalog=TINY["catalog"], dask={"n_workers": 1},
                            acquire={"chip_ids": ["r0232_c0254", "r0232_c0255"]},
                            infer={"adapters": {a: adapters[a] for a in ("buildings_nyc", "lulc_nyc")}})
    month, wanted = "2024-07", ["grid", "acquire", "infer", "mosaic"]
    params = {"month": month, "config_path": str(cfg_path), "stages": wanted, "infer_deployment": "nyc-infer/nyc-infer"}
    out = cli(env, "deployment", "run", "nyc-monthly/nyc-monthly", "--params", json.dumps(params))
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    gpu_log = tmp_path / "gpu-worker.log"
    with open(gpu_log, "w") as log:
        gpu = subprocess.Popen([PREFECT, "worker", "start", "--pool", "nyc-gpu", "--name", "gpu-worker-test"],
                               env={**env, "PREFECT_LOGGING_LEVEL": "INFO"}, cwd=REPO, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cli(env, "worker", "start", "--pool", "nyc-cpu", "--name", "cpu-worker-test", "--run-once", timeout=400)
        state = wait_final(api, run_id)
    finally:
        stop_worker(gpu)
    assert state["type"] == "COMPLETED", (state, gpu_log.read_text()[-3000:])

    infer_dep = httpx.get(f"{api}/deployments/name/nyc-infer/nyc-infer").json()
    query = {"flow_runs": {"deployment_id": {"any_": [infer_dep["id"]]}}}
    runs = httpx.post(f"{api}/flow_runs/filter", json=query).json()
    assert len(runs) == 1, runs
    infer_run = runs[0]
    assert infer_run["work_pool_name"] == "nyc-gpu" and infer_run["state"]["type"] == "COMPLETED", infer_run
    assert infer_run["parameters"]["month"] == month and infer_run["parameters"]["config_path"] == str(cfg_path)
    parent = httpx.get(f"{api}/task_runs/{infer_run['parent_task_run_id']}").json()
    assert parent["flow_run_id"] == run_id  # a subflow of this monthly run
    assert infer_run["id"] in gpu_log.read_text()  # picked up and run by the nyc-gpu worker

    config = load_config(cfg_path)
    assert all(current_pred(config, month, a) for a in config.infer.adapters)  # published and current
    status = contract.month_status(config, month, wanted)
    assert {n: s.state for n, s in status.items()} == dict.fromkeys(wanted, "current")
    cogs = tmp_path / "outputs" / month / "cog"
    assert all((cogs / a / "nyc.tif").is_file() for a in config.infer.adapters), sorted(cogs.rglob("*.tif"))
    summary = json.loads((tmp_path / "outputs" / month / "run_summary.json").read_text())
    assert summary["status"] == "done", summary
    assert summary["stages"]["infer"]["ran_on"] == "nyc-infer/nyc-infer" and not summary["stages"]["infer"]["cached"]
    assert summary["stages"]["mosaic"]["status"] == "done" and not summary["stages"]["mosaic"]["cached"]


def test_an_infer_run_no_gpu_worker_picks_up_is_cancelled_and_fails_the_stage_naming_the_pool(deployed, tmp_path):
    """No nyc-gpu worker: the monthly flow does not wait for ever holding the infer lock; after
    infer.deployment_pickup_timeout_s the nyc-infer run is cancelled and the stage fails with the fix."""
    from benchmarks.rerun_bench import TINY
    from nyceo import contract
    from nyceo.config import load_config

    api, env = deployed
    env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}
    cfg_path = write_config(tmp_path, grid=TINY["grid"], catalog=TINY["catalog"], dask={"n_workers": 1},
                            acquire={"chip_ids": ["r0232_c0254"]}, infer={"deployment_pickup_timeout_s": 3})
    params = {"month": "2024-07", "config_path": str(cfg_path), "stages": ["grid", "acquire", "infer"],
              "infer_deployment": "nyc-infer/nyc-infer"}
    out = cli(env, "deployment", "run", "nyc-monthly/nyc-monthly", "--params", json.dumps(params))
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    cli(env, "worker", "start", "--pool", "nyc-cpu", "--run-once", timeout=300)
    assert wait_final(api, run_id)["type"] == "FAILED"

    summary = json.loads((tmp_path / "outputs" / "2024-07" / "run_summary.json").read_text())
    reason = summary["stages"]["infer"]["reason"]
    assert "no worker of work pool 'nyc-gpu'" in reason and "prefect worker start --pool nyc-gpu" in reason, reason
    assert summary["stages"]["acquire"]["status"] == "done"  # what ran before is kept
    infer_dep = httpx.get(f"{api}/deployments/name/nyc-infer/nyc-infer").json()
    runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [infer_dep["id"]]}}}).json()
    mine = [r for r in runs if httpx.get(f"{api}/task_runs/{r['parent_task_run_id']}").json()["flow_run_id"] == run_id]
    assert len(mine) == 1 and mine[0]["state"]["type"] == "CANCELLED", mine
    config = load_config(cfg_path)
    assert contract.month_status(config, "2024-07", ["infer"])["infer"].state != "current"
    assert not (tmp_path / "outputs" / "2024-07" / ".locks" / "infer.lock").exists()  # the lock was released
