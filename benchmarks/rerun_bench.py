"""Re-run and kill-and-resume benchmark of the monthly flow (each run a fresh `nyceo run` process).

1. first run of a month vs a re-run of the same month (target: re-run < 10 % of the first);
2. a run SIGKILLed (whole process group) once the first acquisition blocks are recorded, then run
   again, vs the uninterrupted run: sha256 of every output file must be equal.
SOURCE_DATE_EPOCH is pinned so provenance timestamps are reproducible. Compared outputs exclude
run_summary.json (timings) and .prefect-results (Prefect's cache records).

    .venv/bin/python benchmarks/rerun_bench.py [--config configs/demo.yaml] [--month 2024-07] [--tiny]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NYCEO = str(Path(sys.executable).parent / "nyceo")
EXCLUDE = ("run_summary.json", ".prefect-results")
# A few Staten Island chips in 4 one-chip blocks, with the embedded city generated only around them.
TINY = {
    "grid": {"boroughs": ["Staten Island"], "block_size_chips": 2},
    "catalog": {"embedded_bbox_lonlat": [-74.2149, 40.6066, -74.1543, 40.6519]},
    "acquire": {"chip_ids": ["r0231_c0253", "r0231_c0254", "r0232_c0253", "r0232_c0254"]},
}


def make_config(base: Path, out_root: Path, embedded_root: Path, tiny: bool) -> Path:
    raw = yaml.safe_load(base.read_text())
    raw.setdefault("run", {})["output_root"] = str(out_root)
    raw.setdefault("catalog", {})["embedded_root"] = str(embedded_root)
    for name, values in (TINY if tiny else {}).items():
        raw.setdefault(name, {}).update(values)
    path = out_root.parent / f"{out_root.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def env(prefect_home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "SOURCE_DATE_EPOCH": "1720000000", "PREFECT_LOGGING_LEVEL": "WARNING"}


def run_month(config: Path, month: str, prefect_home: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([NYCEO, "run", "-m", month, "-c", str(config), "--no-progress"], cwd=REPO,
                         env=env(prefect_home), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nyceo run failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0


def kill_after_blocks(config: Path, month: str, prefect_home: Path, out_root: Path, n_blocks: int = 1,
                      timeout_s: float = 600) -> int:
    """Start a run, SIGKILL its process group once ``n_blocks`` acquisition blocks are recorded."""
    records = out_root / month / "acquire" / "blocks"  # the acquisition stage's finished-block records
    proc = subprocess.Popen([NYCEO, "run", "-m", month, "-c", str(config), "--no-progress"], cwd=REPO,
                            env=env(prefect_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        done = list(records.glob("*.json")) if records.exists() else []
        if len(done) >= n_blocks:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return len(done)
        if proc.poll() is not None:
            raise RuntimeError("the run finished before any block was recorded; nothing to interrupt")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise TimeoutError("no acquisition block recorded in time")


def output_hashes(root: Path) -> dict[str, str]:
    """sha256 of every output file under ``root`` except run summaries and Prefect cache records."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part in EXCLUDE for part in p.relative_to(root).parts):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--month", default="2024-07")
    ap.add_argument("--tiny", action="store_true", help="a few Staten Island chips (fast)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nyceo-rerun-"))
    emb, home = work / "embedded", work / "prefect-home"
    cfg = make_config(REPO / args.config, work / "run", emb, args.tiny)  # one config: output_root is hashed
    run_month(cfg, args.month, home)  # warm-up: generates the embedded imagery once, not timed
    shutil.rmtree(work / "run")
    first = run_month(cfg, args.month, home)
    rerun = run_month(cfg, args.month, home)
    print(f"first run   {first:8.1f} s")
    print(f"re-run      {rerun:8.1f} s   ratio {rerun / first:6.1%}  (target < 10 %)")
    (work / "run").rename(work / "clean")
    n = kill_after_blocks(cfg, args.month, home, work / "run")
    resumed = run_month(cfg, args.month, home)
    a, b = output_hashes(work / "clean"), output_hashes(work / "run")
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"killed after {n} block(s); resumed run {resumed:.1f} s")
    print(f"outputs: {len(a)} files uninterrupted, {len(b)} files killed+resumed, {len(diff)} differ")
    for k in diff[:20]:
        print(f"  differs: {k}")
    print("byte-identical: " + ("yes" if not diff else "NO"))
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
