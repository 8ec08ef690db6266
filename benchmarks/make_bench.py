"""Run the stage benchmarks and render docs/PERFORMANCE.md (``make bench``).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/make_bench.py [--skip-scaling] [--only acquire,infer,...]
        [--work DIR] [--doc docs/PERFORMANCE.md] [--render-only]

Each benchmark runs as its own process (quick settings where it has them: ~13 min without scaling and
~15 min of scaling (Manhattan, Queens, the whole city) on this 2-core machine under a load average of 4-5 from other sessions) and writes its figures with
``--json``; its full printout goes to ``<work>/logs/<name>.log``. The page gets one ratio table
(ours, reference, ratio, target, met?), the machine (CPU model, cores, RAM), date, load average
before and after, git commit, and a GPU section (figures only when torch sees a CUDA device).
``--render-only`` re-renders the page from the JSON already in ``<work>``. ``--skip-scaling`` leaves
out the scaling run (benchmarks/scaling_bench.py, which also writes docs/scaling.png and
docs/SCALING.md's figures).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_report import render_performance, render_scaling  # noqa: E402

# name -> arguments after the script path ({work} and {json} are filled in). Quick settings.
BENCHES: dict[str, list[str]] = {
    "acquire": ["acquire_bench.py", "--out", "{work}/acquire", "--small-blocks", "1"],
    "infer": ["infer_bench.py", "--repeats", "1", "--raw-batches", "2", "--skip", "memory"],
    "model": ["model_bench.py", "--out", "{work}/model", "--mem-only"],
    "mosaic": ["mosaic_bench.py", "--repeats", "3"],
    "zonal": ["zonal_bench.py", "--repeats", "3"],  # class and probability tables, ~30 s
    "evaluate": ["evaluate_bench.py", "--repeats", "2"],
    # three areas up to half the city (119 of 232 chips): the city alone takes ~6-20 min here, with the load
    "scaling": ["scaling_bench.py", "--areas", "Manhattan;Queens;city", "--work", "{work}/scaling",
                "--embedded-root", "{work}/acquire/embedded", "--png", "docs/scaling.png"],
    "rerun": ["rerun_bench.py", "--tiny", "--no-kill"],
    "train": ["train_bench.py", "--steps", "2"],
}


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python, torch and the git commit (with a dirty flag)."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor() or "unknown")
    mem_kb = next(int(ln.split()[1]) for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
    git = lambda *a: subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()  # noqa: E731
    dirty = " (working tree modified)" if git("status", "--porcelain", "--untracked-files=no") else ""
    return {"cpu": cpu, "cores": str(os.cpu_count()), "ram_gib": f"{mem_kb / 2**20:.1f}",
            "os": platform.platform(), "python": platform.python_version(),
            "commit": git("rev-parse", "--short=12", "HEAD") + dirty, "branch": git("rev-parse", "--abbrev-ref", "HEAD")}


def gpu() -> dict | None:
    """torch's view of a CUDA device (in a child: this process stays torch-free), or None."""
    code = ("import json, torch; ok = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
            "'cuda': ok, 'name': torch.cuda.get_device_name(0) if ok else None}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    info = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"torch": "?", "cuda": False}
    return info


def run_bench(name: str, work: Path) -> dict:
    """Run one benchmark; {"ok", "seconds", "log", "json"}; figures in work/<name>.json."""
    argv = [a.format(work=work) for a in BENCHES[name]]
    jpath = work / f"{name}.json"
    jpath.unlink(missing_ok=True)
    log = work / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / argv[0]), *argv[1:], "--json", str(jpath)],
                              cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(REPO)})
    seconds = time.perf_counter() - t0
    ok = proc.returncode == 0 and jpath.exists()
    print(f"{name:<9} {'ok' if ok else 'FAILED':<6} {seconds:7.1f} s  (log {log})", flush=True)
    return {"ok": ok, "seconds": seconds, "log": str(log)}


def run_all(names: list[str], work: Path, earlier: dict | None) -> dict:
    """Run ``names``; with ``earlier`` (an --only re-run) its other benchmarks' records are kept."""
    meta = {"machine": machine(), "gpu": gpu(), "load_before": os.getloadavg(), "runs": {},
            "started": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if earlier:
        meta = {**earlier, "reran": [*earlier.get("reran", []), {"names": names, "at": meta["started"],
                                                                 "load_before": meta["load_before"]}]}
    t0 = time.perf_counter()
    for name in names:
        meta["runs"][name] = run_bench(name, work)
    meta["load_after"] = os.getloadavg()
    meta["total_s"] = meta.get("total_s", 0) * bool(earlier) + time.perf_counter() - t0
    return meta


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(REPO / "outputs" / "bench"), help="scratch + JSON + logs folder")
    ap.add_argument("--doc", default=str(REPO / "docs" / "PERFORMANCE.md"))
    ap.add_argument("--scaling-doc", default=str(REPO / "docs" / "SCALING.md"))
    ap.add_argument("--only", default="", help="comma list of benchmarks to run (default: all)")
    ap.add_argument("--skip-scaling", action="store_true", help="leave out the scaling run")
    ap.add_argument("--render-only", action="store_true", help="render from the JSON already in --work")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    if args.skip_scaling:
        names = [n for n in names if n != "scaling"]
    unknown = set(names) - set(BENCHES)
    if unknown:
        raise SystemExit(f"--only names unknown benchmarks {sorted(unknown)}; known: {', '.join(BENCHES)}")
    meta_path = work / "run.json"
    if args.render_only:
        meta = json.loads(meta_path.read_text())
    else:
        meta = run_all(names, work, json.loads(meta_path.read_text()) if args.only and meta_path.exists() else None)
        meta_path.write_text(json.dumps(meta, indent=1))
    figures = {n: json.loads((work / f"{n}.json").read_text()) for n in BENCHES if (work / f"{n}.json").exists()}
    Path(args.doc).write_text(render_performance(meta, figures))
    print(f"wrote {args.doc}")
    if "scaling" in figures:
        Path(args.scaling_doc).write_text(render_scaling(meta, figures["scaling"]))
        print(f"wrote {args.scaling_doc}")
    failed = [n for n, r in meta["runs"].items() if not r["ok"]]
    if failed:
        print(f"failed: {', '.join(failed)} (their rows say so; logs under {work}/logs)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
