"""Kill the monthly flow (SIGKILL, whole process group) inside acquire, then inside infer, then inside
mosaic, finish it, and compare sha256 of every output with an uninterrupted run (tiny area)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.rerun_bench import KILL_POINTS, kill_and_resume, make_config, output_hashes, run_month

REPO = Path(__file__).resolve().parent.parent


def test_kill_in_every_stage_and_resume_is_byte_identical(tmp_path):
    emb, home = tmp_path / "embedded", tmp_path / "prefect-home"
    cfg = make_config(REPO / "configs/demo.yaml", tmp_path / "run", emb, tiny=True, extra={"dask": {"n_workers": 2}})
    run_month(cfg, "2024-07", home)
    (tmp_path / "run").rename(tmp_path / "clean")  # the uninterrupted run's outputs move aside
    killed = kill_and_resume(cfg, "2024-07", home, tmp_path / "run")
    assert killed == list(KILL_POINTS), f"the run was not interrupted inside every stage: {killed}"
    a, b = output_hashes(tmp_path / "clean"), output_hashes(tmp_path / "run")
    assert any(k.startswith("2024-07/stack@") for k in a) and any("/pred/" in k for k in a)
    assert sum(k.endswith(".tif") for k in a) == 14  # (class, confidence) x 2 areas x 3 adapters + 2 probability
    differing = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    assert not differing, f"outputs differ after kill-and-resume: {differing}"
