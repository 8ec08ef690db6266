"""Per-(output root, month, stage) locks on local disk and S3 (moto on 127.0.0.1), two `nyceo run`
of the same new month at once (issue 10 defect 4), the whole monthly flow with run.output_root
on S3 (issue 9), and two monthly runs of a new month at once with run.output_root on S3 (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from benchmarks.rerun_bench import TINY
from nyceo import contract, locks
from nyceo.config import load_config
from tests.conftest import free_port

REPO = Path(__file__).resolve().parent.parent
NYCEO = str(Path(sys.executable).parent / "nyceo")
MONTH = "2024-07"
HOLD = ("import sys, time; from nyceo.config import load_config; from nyceo.locks import stage_lock\n"
        "with stage_lock(load_config(sys.argv[1]), '2024-07', 'infer'):\n"
        "    print('held', flush=True); time.sleep(600)")
# One monthly flow run in its own process, on its own temporary Prefect server (as `nyceo run` does).
RUN = ("import json, sys; from flows.monthly import monthly_run\n"
       "from nyceo.cli.prefect_server import temporary_prefect_server\n"
       "with temporary_prefect_server():\n"
       "    summary = monthly_run(month=sys.argv[2], config_path=sys.argv[1], stages=sys.argv[3].split(','))\n"
       "print('SUMMARY ' + json.dumps(summary, default=str))")


def tiny_config(root: Path, emb: Path, output_root: str | None = None, sections: dict | None = None,
                **run: object) -> Path:
    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    raw["run"].update(output_root=output_root or str(root / "outputs"), **run)
    raw["catalog"]["embedded_root"] = str(emb)
    for key, values in [*TINY.items(), *(sections or {}).items()]:
        raw.setdefault(key, {}).update(values)
    raw["change"] = {**raw.get("change", {}), "enabled": False}  # one month: no pair to compare
    raw.pop("train", None)  # the seeded untrained demo adapters (training has its own tests)
    for name, adapter in raw["infer"]["adapters"].items():  # adapter files stay local (never under s3://)
        adapter["source"] = str(root / "demo_adapters" / name)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_lock_names_its_live_holder_and_breaks_a_dead_one(tmp_path):
    cfg_path = tiny_config(tmp_path, tmp_path / "emb", lock_timeout_s=0)
    cfg = load_config(cfg_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(cfg_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(locks.LockedError, match=f"pid {holder.pid}"):
        with locks.stage_lock(cfg, MONTH, "infer"):
            pass
    with locks.stage_lock(cfg, MONTH, "acquire"):  # other stages are not blocked
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    path = locks.lock_path(cfg, MONTH, "infer")
    assert json.loads(Path(path).read_text())["pid"] == holder.pid  # left behind by the dead run
    with locks.stage_lock(cfg, MONTH, "infer") as me:  # stale: broken safely, then ours
        assert json.loads(Path(path).read_text())["token"] == me["token"]
    assert not Path(path).exists()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3 API (moto server) on 127.0.0.1 with a bucket; credentials in the environment."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    keys = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in keys.items():
            mp.setenv(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        import s3fs

        import requests

        # moto's backends are process-wide: a server started earlier in this process (another
        # module's fixture) left its buckets behind. Start from an empty S3.
        requests.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
        s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir("nyceo-test")
        try:
            yield endpoint
        finally:
            server.stop()


def test_s3_lock_is_exclusive_and_a_stale_one_is_broken(s3, tmp_path):
    cfg = load_config(tiny_config(tmp_path, tmp_path / "emb", output_root="s3://nyceo-test/locks",
                                  storage_options={"endpoint_url": s3}, lock_timeout_s=0, lock_stale_s=30))
    winners, errors = [], []

    def contend() -> None:
        try:
            with locks.stage_lock(cfg, MONTH, "mosaic"):
                winners.append(1)
                time.sleep(1.0)
        except locks.LockedError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=contend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) >= 1 and len(winners) + len(errors) == 4 and all("held by another run" in e for e in errors)
    # a lock of another host whose heartbeat stopped long ago is broken; a fresh one is respected
    import fsspec

    path = locks.lock_path(cfg, MONTH, "mosaic")
    fs, p = fsspec.core.url_to_fs(path)
    fs.pipe_file(p, json.dumps({"host": "gpu-node-7", "pid": 1, "token": "t", "heartbeat": time.time()}).encode())
    with pytest.raises(locks.LockedError, match="gpu-node-7"):
        with locks.stage_lock(cfg, MONTH, "mosaic"):
            pass
    fs.pipe_file(p, json.dumps({"host": "gpu-node-7", "pid": 1, "token": "t", "heartbeat": time.time() - 600}).encode())
    with locks.stage_lock(cfg, MONTH, "mosaic"):
        assert json.loads(fs.cat_file(p))["host"] != "gpu-node-7"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_late_second_breaker_of_a_stale_lock_cannot_delete_the_new_holders_lock(where, s3, tmp_path, monkeypatch):
    """Two runs judge the same dead holder's lock stale. The first breaks it and takes the lock; the
    second re-read the dead token just before that (the injected interleaving: its re-read returns
    the dead holder) and then deletes. Without the per-token break marker it deleted the first
    run's live lock, so both would hold the stage."""
    import fsspec

    root = f"s3://nyceo-test/race-{tmp_path.name}" if where == "s3" else None
    cfg = load_config(tiny_config(tmp_path, tmp_path / "emb", output_root=root, lock_timeout_s=0, lock_stale_s=30,
                                  **({"storage_options": {"endpoint_url": s3}} if root else {})))
    path = locks.lock_path(cfg, MONTH, "infer")
    fs, p = fsspec.core.url_to_fs(path)
    dead = {"host": "gpu-node-7", "pid": 1, "token": "dead", "heartbeat": time.time() - 600}
    fs.mkdirs(p.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(p, json.dumps(dead).encode())
    with locks.stage_lock(cfg, MONTH, "infer") as first:  # broke the dead lock, holds it now
        monkeypatch.setattr(locks, "read_lock", lambda _path: dict(dead))  # the second run's stale re-read
        locks._break(path, dead, stale_s=30)
        monkeypatch.undo()
        assert json.loads(fs.cat_file(p))["token"] == first["token"]  # still the first run's
        with pytest.raises(locks.LockedError):  # and still exclusive
            with locks.stage_lock(cfg, MONTH, "infer"):
                pass
    assert not fs.exists(p) and not fs.glob(p + ".break-*")  # released: no lock, no marker left


def test_two_runs_of_a_new_month_at_once_both_finish_and_predict_once(tmp_path):
    """Defect 4: two simultaneous runs used to wedge the month (KeyError 's1', StackMismatchError)."""
    cfg = tiny_config(tmp_path, tmp_path / "emb")
    procs = []
    for i in range(2):
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / f"ph{i}"), "PREFECT_LOGGING_LEVEL": "WARNING"}
        procs.append(subprocess.Popen([NYCEO, "run", "-m", MONTH, "-c", str(cfg), "--no-progress"], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    summaries = [json.loads(o[0][o[0].index("{"):]) for o in outs]
    infer_cached = sorted(s["stages"]["infer"]["cached"] for s in summaries)
    assert infer_cached == [False, True], "inference must run once: the second run waits, then reuses it"
    core = ["grid", "acquire", "infer", "mosaic", "evaluate", "change"]
    assert {n: s.state for n, s in contract.month_status(load_config(cfg), MONTH, core).items()} == {
        "grid": "current", "acquire": "current", "infer": "current", "mosaic": "current", "evaluate": "current",
        "change": "skipped"}
    assert not list((tmp_path / "outputs" / MONTH / ".locks").glob("*.lock"))


def test_monthly_flow_with_output_root_on_s3(s3, tmp_path, prefect_api):
    import fsspec

    from flows.monthly import monthly_run

    cfg = tiny_config(tmp_path, tmp_path / "emb", output_root="s3://nyceo-test/out",
                      storage_options={"endpoint_url": s3})
    first = monthly_run(month=MONTH, config_path=str(cfg))
    assert first["status"] == "done" and not any(first["stages"][n]["cached"] for n in ("acquire", "infer", "mosaic"))
    fs, _ = fsspec.core.url_to_fs("s3://nyceo-test/out", endpoint_url=s3)
    names = fs.find("nyceo-test/out")
    assert any(n.endswith("/stack.zarr.current") for n in names)
    assert any("/pred/lulc_nyc@" in n and n.endswith("/class_map/c/0/0") for n in names)
    assert any(n.endswith("/cog/lulc_nyc/nyc.tif") for n in names) and "nyceo-test/out/catalog.json" in names
    for stage in ("zonal", "report"):  # the analysis stages run on object storage too
        assert first["stages"][stage]["status"] == "done" and not first["stages"][stage].get("cached"), first["stages"][stage]
    assert any(f"/{MONTH}/zonal@" in n and n.endswith("/lulc_nyc/nta.parquet") for n in names)
    assert any(f"/{MONTH}/report@" in n and n.endswith("/index.html") for n in names)
    assert f"nyceo-test/out/{MONTH}/report.current" in names and first.get("artifacts")
    before = {n: fs.info(n)["ETag"] for n in names if "/.locks/" not in n and not n.endswith("run_summary.json")}
    second = monthly_run(month=MONTH, config_path=str(cfg))
    assert all(second["stages"][n].get("cached") for n in contract.stage_names() if n != "change"), second["stages"]
    fs.invalidate_cache()
    after = {n: fs.info(n)["ETag"] for n in fs.find("nyceo-test/out")
             if "/.locks/" not in n and not n.endswith("run_summary.json")}
    assert after == before


def s3_etags(fs, root: str) -> dict[str, str]:
    """{object name under root: ETag} of the outputs (not the run summary, which holds timings)."""
    fs.invalidate_cache()
    return {n[len(root):]: fs.info(n)["ETag"] for n in fs.find(root) if not n.endswith("/run_summary.json")}


@pytest.mark.slow  # a reference run in-process, then two runs at once in their own processes
def test_two_runs_of_a_new_month_at_once_on_s3(s3, tmp_path, prefect_api, monkeypatch):
    """Two monthly runs of the same new month started at once, output root on S3 (moto): both finish,
    each stage is built by one of them (the other waits on the S3 lock, then finds it current), the
    objects equal a single run's (ETags: MD5 of the bytes), and no lock object is left behind."""
    import fsspec

    from flows.monthly import monthly_run

    stages = ["grid", "acquire", "infer", "mosaic"]
    buildings = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["infer"]["adapters"]["buildings_nyc"]
    cfg = tiny_config(tmp_path, tmp_path / "emb", output_root="s3://nyceo-test/twice",
                      storage_options={"endpoint_url": s3},
                      sections={"acquire": {"chip_ids": ["r0232_c0254", "r0232_c0255"]},  # one block
                                "infer": {"adapters": {"buildings_nyc": buildings}},  # one model to load
                                "dask": {"n_workers": 1}})
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1720000000")  # reproducible provenance timestamps
    single = monthly_run(month=MONTH, config_path=str(cfg), stages=stages)
    assert single["status"] == "done" and not any(single["stages"][n]["cached"] for n in stages), single["stages"]
    fs, _ = fsspec.core.url_to_fs("s3://nyceo-test", endpoint_url=s3)
    root = "nyceo-test/twice/"
    reference = s3_etags(fs, root)
    assert any("/pred/buildings_nyc@" in n for n in reference) and any(n.endswith("/nyc.tif") for n in reference)
    assert not [n for n in reference if "/.locks/" in n]
    fs.rm(root, recursive=True)  # the same month is new again: no grid, stack, predictions, COGs
    fs.invalidate_cache()
    assert not fs.find(root)

    procs = []
    for i in range(2):
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / f"ph{i}"), "PREFECT_LOGGING_LEVEL": "WARNING"}
        procs.append(subprocess.Popen([sys.executable, "-c", RUN, str(cfg), MONTH, ",".join(stages)], cwd=REPO,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-3000:] for o in outs]
    summaries = [json.loads(o[0].split("SUMMARY ", 1)[1]) for o in outs]
    for name in stages:  # built once: the other run waited on the lock, then found it current
        assert sorted(s["stages"][name]["cached"] for s in summaries) == [False, True], (name, summaries)
    assert [s["stages"]["infer"].get("ran_on") for s in summaries].count("local") == 1
    after = s3_etags(fs, root)
    assert not [n for n in after if "/.locks/" in n], "lock objects left behind"
    assert after == reference  # the same objects with the same bytes as the single run
    assert {n: st.state for n, st in contract.month_status(load_config(cfg), MONTH, stages).items()} == \
        dict.fromkeys(stages, "current")
