"""Estimated (nyceo.memory) vs measured peak memory of `nyceo acquire` and `nyceo infer` on the tiny
area (4 Staten Island chips), to calibrate the up-front memory check. Measured: the peak of the summed
RSS of the command's process tree, sampled every 0.1 s (psutil).

    .venv/bin/python benchmarks/memory_bench.py [--config configs/demo.yaml] [--month 2024-07] [--block 2]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.rerun_bench import NYCEO, REPO, env, make_config
from nyceo.config import load_config
from nyceo.memory import GIB, acquire_estimate, infer_estimate


def peak_tree_rss(cmd: list[str], environ: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak bytes of the summed RSS of the process and its children)."""
    t0, peak = time.perf_counter(), 0
    proc = subprocess.Popen(cmd, cwd=REPO, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.1)
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed:\n{proc.stderr.read()[-2000:]}")
    return time.perf_counter() - t0, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--month", default="2024-07")
    ap.add_argument("--block", type=int, default=2, help="grid.block_size_chips")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nyceo-mem-"))
    cfg_path = make_config(REPO / args.config, work / "run", work / "embedded", tiny=True,
                           extra={"grid": {"block_size_chips": args.block}})
    cfg, environ = load_config(cfg_path), env(work / "prefect-home")
    subprocess.run([NYCEO, "acquire", "-m", args.month, "-c", str(cfg_path)], cwd=REPO, env=environ,
                   capture_output=True, check=True)  # warm-up: the embedded imagery is generated once
    blocks = ",".join(p.stem for p in sorted((work / "run" / args.month).glob("acquire/*/blocks/*.json")))
    rows = []
    for stage, cmd, est in (
        ("acquire", ["acquire", "-m", args.month, "--rebuild-blocks", blocks], acquire_estimate(cfg, 1)),
        ("infer", ["infer", "-m", args.month], infer_estimate(cfg)),
    ):
        seconds, peak = peak_tree_rss([NYCEO, *cmd, "-c", str(cfg_path)], environ)
        rows.append((stage, seconds, peak, est))
    print(f"{'stage':<8} {'time s':>7} {'measured GB':>12} {'estimate GB':>12} {'ratio':>6}  parts")
    for stage, seconds, peak, est in rows:
        print(f"{stage:<8} {seconds:7.1f} {peak / GIB:12.2f} {est.total_bytes / GIB:12.2f} "
              f"{est.total_bytes / peak:6.2f}  {est.describe()}")
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
