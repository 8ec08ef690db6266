"""Kill the monthly flow (SIGKILL, whole process group) inside acquire, infer and mosaic (polled on the
stage's first recorded unit); `nyceo mosaic` finishes mosaic; then kill evaluate, change, zonal and
report each through its own command (`nyceo evaluate|change|zonal|report`, no Prefect server to start)
where strace SIGKILLs the process the moment it creates a folder in the middle of the stage's writes,
resumed by the same command (zonal's key covers evaluate's and change's outputs, report reads zonal's
and the COGs); finish with one `nyceo run` (it resumes report) and compare sha256 of every output
with an uninterrupted run (tiny area, 4 chips). The previous month (acquire + one adapter's
predictions, what change needs) is on disk before both runs and must come through byte-identical. Then delete one output file of each later stage by hand: status says so and
the stages' runs rewrite the same bytes. Then restart a Prefect server in the middle of a flow.

Cost: 5 `nyceo run` in the fixture (1 uninterrupted, 3 killed, 1 final) as before the later-stage
kills were added, + 10 stage commands without Prefect, + 1 run across the server restart (a 2nd
only if that one fails)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.rerun_bench import (KILL_AT_MKDIR, KILL_POINTS, NYCEO, PREDECESSOR, env, kill_and_resume,
                                    make_config, output_hashes, prepare_predecessor, run_month)
from nyceo.config import load_config
from nyceo.contract import stages
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
MONTH = "2024-07"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("strace") is None, reason="strace kills the later stages mid-write")]


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """An uninterrupted run's tree ("clean") and a killed-in-every-stage-then-finished one ("run")."""
    tmp = tmp_path_factory.mktemp("resume")
    emb, home, run = tmp / "embedded", tmp / "prefect-home", tmp / "run"
    cfg = make_config(REPO / "configs/demo.yaml", run, emb, tiny=True, extra={"dask": {"n_workers": 2}})
    t0 = time.perf_counter()
    prepare_predecessor(cfg, home)
    print(f"previous month {time.perf_counter() - t0:.0f} s")
    shutil.copytree(run, tmp / "base", symlinks=True)  # the earlier month, for the killed run
    earlier = {k: v for k, v in output_hashes(run).items() if k.startswith(f"{PREDECESSOR}/")}
    print(f"uninterrupted run {run_month(cfg, MONTH, home):.0f} s")
    run.rename(tmp / "clean")  # the uninterrupted run's outputs move aside
    (tmp / "base").rename(run)
    config, by_name = load_config(cfg), {s.name: s for s in stages()}
    left: dict[str, tuple[str, dict[str, str]]] = {}

    def after_kill(stage: str) -> None:  # what each kill left: the stage's state and the month's files (sha256)
        month_files = {k: v for k, v in output_hashes(run).items() if k.startswith(f"{MONTH}/")}
        left[stage] = (by_name[stage].status(config, MONTH).state, month_files)
        print(f"killed inside {stage} at {time.perf_counter() - t0:.0f} s")

    t0 = time.perf_counter()
    killed = kill_and_resume(cfg, MONTH, home, run, clean_root=tmp / "clean", after_kill=after_kill)
    print(f"kills and resumes {time.perf_counter() - t0:.0f} s")
    return {"tmp": tmp, "cfg": cfg, "home": home, "config": config, "stages": by_name, "killed": killed,
            "left": left, "earlier": earlier}


def test_kill_in_every_stage_and_resume_is_byte_identical(resumed):
    tmp, left = resumed["tmp"], resumed["left"]
    assert resumed["killed"] == [*KILL_POINTS, *KILL_AT_MKDIR], f"not interrupted inside every stage: {resumed['killed']}"
    for stage, (state, _) in left.items():
        assert state != "current", f"the kill did not land inside {stage} (it finished first)"
    started = {"evaluate": "/eval/lulc_nyc/", "change": "/change/buildings_nyc/mom/nyc_transition.tif",
               "zonal": "/lulc_nyc/borough.parquet"}
    for stage, marker in started.items():  # killed mid-stage: some of its outputs were already written
        assert any(marker in f for f in left[stage][1]), f"nothing of {stage} was written before its kill"
    a, b = output_hashes(tmp / "clean"), output_hashes(tmp / "run")
    own = {"evaluate": f"{MONTH}/eval/", "change": f"{MONTH}/change/", "zonal": f"{MONTH}/zonal", "report": f"{MONTH}/report"}
    for stage, prefix in own.items():  # what the kill left of the stage: whole files, or hidden temporaries
        half = sorted(k for k, v in left[stage][1].items()  # (".name.<uuid>.tmp", ".staging-*/")
                      if k.startswith(prefix) and not any(p.startswith(".") for p in Path(k).parts) and a.get(k) != v)
        assert not half, f"{stage} killed mid-write left files under a final name that differ from the clean run: {half}"
    assert any(k.startswith(f"{MONTH}/stack@") for k in a) and any("/pred/" in k for k in a)
    assert sum(k.endswith(".tif") and "/cog/" in k for k in a) == 14  # (class, confidence) x 2 areas x 3 adapters + 2 probability
    assert any("/change/buildings_nyc/mom/" in k and k.endswith(".tif") for k in a), "change did no real work"
    assert any(k.startswith(f"{MONTH}/report@") for k in a) and any(k.startswith(f"{MONTH}/zonal@") for k in a)
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differing, f"outputs differ after kill-and-resume: {differing}"
    assert {k: v for k, v in b.items() if k.startswith(f"{PREDECESSOR}/")} == resumed["earlier"], "earlier month changed"


DELETED = {  # stage -> one of its output files (not the one that carries its key), deleted by hand;
    # downstream first, so that each stage is checked while its upstreams are still intact
    "report": f"{MONTH}/report@*/img/map_lulc_nyc.png",
    "zonal": f"{MONTH}/zonal@*/heat/ndvi_100m.tif",
    "evaluate": f"{MONTH}/eval/lulc_nyc/embedded_landcover/confusion.png",
    "change": f"{MONTH}/change/buildings_nyc/mom/nyc_transition.tif",
}


def test_output_deleted_by_hand_is_detected_and_rebuilt(resumed, monkeypatch):
    """Each stage's ``run`` (what the flow's generic task calls, here in this process, upstreams first)
    sees the missing file and rewrites the same bytes."""
    run, config, by_name = resumed["tmp"] / "run", resumed["config"], resumed["stages"]
    assert all(by_name[s].status(config, MONTH).state == "current" for s in DELETED)
    before = output_hashes(run)
    for stage, pattern in DELETED.items():
        (path,) = run.glob(pattern)
        path.unlink()
        state = by_name[stage].status(config, MONTH).state
        assert state == "partial" or (stage == "change" and state == "stale"), f"{stage} says {state} with {path.name} deleted"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", env(resumed["home"])["SOURCE_DATE_EPOCH"])  # as in the runs
    for stage in ("evaluate", "change", "zonal", "report"):
        by_name[stage].run(config, MONTH)
    assert all(by_name[s].status(config, MONTH).state == "current" for s in DELETED)
    after = output_hashes(run)
    differing = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not differing, f"the deleted files were not rebuilt byte-identical: {differing}"


def _start_server(port: int, home: Path) -> subprocess.Popen:
    from nyceo.cli.prefect_server import _uvicorn_argv, _wait_healthy

    environ = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_UI_ENABLED": "0",
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    environ.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(_uvicorn_argv(port), env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_healthy(proc, f"http://127.0.0.1:{port}/api", 180)
    return proc


def test_prefect_server_restarted_mid_flow(resumed):
    """A Prefect server (PREFECT_API_URL) SIGKILLed while infer re-predicts an adapter, and started again
    on the same port and database: the run finishes, or fails with an error and the next run finishes;
    then every output equals the uninterrupted run's."""
    run, cfg, home = resumed["tmp"] / "run", resumed["cfg"], resumed["home"]
    for p in run.glob(f"{MONTH}/pred/lulc_nyc*"):  # lulc_nyc's predictions gone: infer re-predicts them
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    port, server_home = free_port(), resumed["tmp"] / "server-home"
    server = _start_server(port, server_home)
    environ = {**env(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    proc = subprocess.Popen([NYCEO, "run", "-m", MONTH, "-c", str(cfg), "--no-progress"], cwd=REPO, env=environ,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not any(run.glob(f"{MONTH}/pred/lulc_nyc@*.zarr.done/*.json")):
            assert proc.poll() is None and time.time() < deadline, "the run ended before infer re-predicted"
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)  # the server dies mid-flow ...
        server.wait()
        server = _start_server(port, server_home)  # ... and comes back on the same port and database
        _, err = proc.communicate(timeout=600)
        nxt = None
        if proc.returncode != 0:  # failed clearly: the next run, on the restarted server, must finish ...
            nxt = subprocess.run([NYCEO, "run", "-m", MONTH, "-c", str(cfg), "--no-progress"], cwd=REPO,
                                 env=environ, capture_output=True, text=True)
    finally:
        for p in (proc, server):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    assert proc.returncode == 0 or "failed" in err, f"no clear outcome (exit {proc.returncode}):\n{err[-2000:]}"
    print(f"run across the server restart: exit {proc.returncode}; {err.strip().splitlines()[-1:] if proc.returncode else 'finished'}")
    assert nxt is None or nxt.returncode == 0, f"the run after the server restart failed:\n{nxt.stderr[-2000:]}"
    a, b = output_hashes(resumed["tmp"] / "clean"), output_hashes(run)
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differing, f"outputs differ after the server restart: {differing}"  # ... with the same bytes
