"""Scaling of acquire + infer with the number of chips: one borough, more boroughs, the whole city.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/scaling_bench.py [--areas "Manhattan;Manhattan,Bronx;city"]
        [--month 2024-07] [--json PATH] [--png docs/scaling.png] [--embedded-root DIR]

The same stage work for every area, on the embedded offline catalog with configs/demo.yaml's model
settings but no ``train`` section (seeded, untrained demo adapters, as ``rerun_bench.py --tiny``):

0. warm-up (not timed): the embedded city's month is generated once (shared by every area) and the
   demo adapters are written once into a shared folder;
1. per area, a fresh process (``--child``) runs ``run_acquire`` then ``run_infer`` (all adapters) into
   its own empty output root and reports wall seconds of acquire, of loading the model (a fixed cost,
   reported apart) and of infer, and its peak RSS (``ru_maxrss`` of the process and of any children);
2. the parent prints chips, seconds, seconds/chip, peak RSS, the largest inference block and output
   bytes per area, and for the largest area (the city) against the largest single borough measured
   (else the smallest area): (time ratio ÷ chip ratio), in wall seconds and in CPU-seconds (target
   within 15 % of 1: time linear in chips) and the peak memory ratio (target within 10 % of 1: memory
   flat). Peak memory is bounded by the largest inference block (``infer.block_size_chips``), so an
   area whose blocks are all partial (Manhattan is 2-3 chips wide) peaks lower than any area with a
   full block; that is why the reference is a borough, not the smallest area;
3. ``--png``: the growth curve (seconds and peak RSS against chips) with matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DEFAULT_AREAS = "Manhattan;Queens;city"
BOROUGHS = ["Manhattan", "Bronx", "Brooklyn", "Queens", "Staten Island"]


def area_config(base: Path, work: Path, name: str, boroughs: list[str], embedded: Path, adapters: Path) -> Path:
    """configs/demo.yaml without ``train``, writing under ``work/name``, limited to ``boroughs``."""
    raw = yaml.safe_load(base.read_text())
    raw.pop("train", None)
    raw["run"]["output_root"] = str(work / name)
    raw["grid"]["boroughs"] = boroughs
    raw["catalog"]["embedded_root"] = str(embedded)
    for ad in raw["infer"]["adapters"].values():
        ad["source"] = ad["source"].replace("{output_root}", str(adapters))
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_s() -> float:
    """CPU seconds of this process so far, all threads (and any waited-for children)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def child(config: str, month: str) -> None:
    """(Fresh process) acquire + infer one area; print one JSON line of timings and peak RSS."""
    from nyceo import paths
    from nyceo.acquire import run_acquire
    from nyceo.config import load_config
    from nyceo.grid_stage import make_grid
    from nyceo.infer import run_infer
    from nyceo.infer.stage import make_runner

    cfg = load_config(config)
    n_chips = len(make_grid(cfg))
    t0, c0 = time.perf_counter(), cpu_s()
    acq = run_acquire(cfg, month)
    t1, c1 = time.perf_counter(), cpu_s()
    runner = make_runner(cfg)
    runner.load(list(runner.adapter_names))
    t2, c2 = time.perf_counter(), cpu_s()
    run_infer(cfg, month, list(runner.adapter_names), runner=runner)
    t3, c3 = time.perf_counter(), cpu_s()
    month_dir = Path(paths.month_dir(cfg, month))
    sizes = {"stack_bytes": du(Path(acq["store"]).resolve()) if acq.get("store") else 0,
             "pred_bytes": du(month_dir / "pred") if (month_dir / "pred").exists() else 0}
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"chips": n_chips, "acquire_s": t1 - t0, "load_s": t2 - t1, "infer_s": t3 - t2,
                      "acquire_cpu_s": c1 - c0, "infer_cpu_s": c3 - c2, "adapters": list(runner.adapter_names),
                      "peak_rss_mb": max(self_mb, kids_mb), "acquire_status": acq.get("status"), **sizes}))


def run_area(config: Path, month: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(config), "--month", month],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise SystemExit(f"scaling child failed for {config}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def warm_up(config: Path, month: str, embedded: Path) -> None:
    """Generate the embedded city's month and write the demo adapters, once, outside the timings."""
    from acquire_bench import generate_city  # noqa: PLC0415  (sibling script)

    from nyceo.config import load_config
    from nyceo.model import ensure_demo_adapters

    generate_city(str(config), str(embedded), month)
    ensure_demo_adapters(load_config(config))


def reference_run(runs: list[dict]) -> dict:
    """The run the largest area is compared with: the single borough with the most chips (the issue's
    "one borough, then the whole city"), else the smallest area."""
    boroughs = [r for r in runs[:-1] if r["label"] in BOROUGHS]
    return max(boroughs, key=lambda r: r["chips"]) if boroughs else runs[0]


def summarize(runs: list[dict]) -> dict:
    ref, big = reference_run(runs), runs[-1]
    chip_ratio = big["chips"] / ref["chips"]
    time_ratio = big["seconds"] / ref["seconds"]
    cpu_ratio = (big["acquire_cpu_s"] + big["infer_cpu_s"]) / (ref["acquire_cpu_s"] + ref["infer_cpu_s"])
    return {"reference": ref["label"], "chip_ratio": chip_ratio, "time_ratio": time_ratio,
            "linearity": time_ratio / chip_ratio, "cpu_ratio": cpu_ratio, "cpu_linearity": cpu_ratio / chip_ratio,
            "memory_ratio": big["peak_rss_mb"] / ref["peak_rss_mb"],
            "s_per_chip": big["seconds"] / big["chips"],
            "acquire_s_per_chip": big["acquire_s"] / big["chips"], "infer_s_per_chip": big["infer_s"] / big["chips"],
            "acquire_cpu_s_per_chip": big["acquire_cpu_s"] / big["chips"],
            "infer_cpu_s_per_chip": big["infer_cpu_s"] / big["chips"],
            "stack_bytes_per_chip": big["stack_bytes"] / big["chips"], "pred_bytes_per_chip": big["pred_bytes"] / big["chips"]}


def block_geometry(config: Path, month: str) -> dict:
    """The area's inference blocks: how many, the largest read extent (Mpx), and the largest stack extent
    resident at once (current + prefetched block, in processing order) — what bounds peak memory."""
    from nyceo.acquire.stage import locate
    from nyceo.config import load_config
    from nyceo.infer.engine import plan_blocks

    cfg = load_config(config)
    specs = plan_blocks(locate(cfg, month).area, cfg.infer.block_size_chips or cfg.grid.block_size_chips)
    read_px = [(s.read_box[1] - s.read_box[0]) * (s.read_box[3] - s.read_box[2]) for s in specs]
    # with infer.prefetch_blocks the next block is read while the current one is computed: two resident
    resident = ([a + b for a, b in zip(read_px, read_px[1:])] or read_px) if cfg.infer.prefetch_blocks else read_px
    return {"blocks": len(specs), "max_block_read_mpx": max(read_px) / 1e6, "max_resident_read_mpx": max(resident) / 1e6}


def plot(runs: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chips = [r["chips"] for r in runs]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    ax.plot(chips, [r["seconds"] for r in runs], "o-", color="#c4281b", label="acquire + infer (s)")
    ax.plot(chips, [r["acquire_s"] for r in runs], "s--", color="#419bdf", label="acquire (s)")
    ax.plot(chips, [r["infer_s"] for r in runs], "^--", color="#397d49", label="infer, 3 adapters (s)")
    ax.plot(chips, [r["acquire_cpu_s"] + r["infer_cpu_s"] for r in runs], "o:", color="#7a1f14",
            label="acquire + infer (CPU-s)")
    k = runs[0]["seconds"] / runs[0]["chips"]
    ax.plot([0, max(chips)], [0, k * max(chips)], ":", color="grey", label="linear from the smallest area")
    ax.set_xlabel("chips (224 px, 10 m)")
    ax.set_ylabel("seconds (wall; CPU where marked)")
    for r in runs:
        ax.annotate(r["label"], (r["chips"], r["seconds"]), textcoords="offset points", xytext=(4, 6), fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(chips, [r["peak_rss_mb"] for r in runs], "D-", color="#a59b8f", label="peak RSS (MB)")
    ax2.set_ylabel("peak RSS (MB)")
    ax2.set_ylim(0, max(r["peak_rss_mb"] for r in runs) * 1.6)
    lines = ax.get_legend_handles_labels(), ax2.get_legend_handles_labels()
    ax.legend(lines[0][0] + lines[1][0], lines[0][1] + lines[1][1], fontsize=7, loc="upper left")
    ax.set_title("nyceo acquire + infer: growth with area (2-core CPU, embedded catalog)", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", default="configs/demo.yaml")
    ap.add_argument("--month", default="2024-07")
    ap.add_argument("--areas", default=DEFAULT_AREAS, help="';'-separated areas, each a ','-list of boroughs or 'city'")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary folder)")
    ap.add_argument("--embedded-root", default=None, help="an embedded catalog root to reuse (same seed)")
    ap.add_argument("--json", default=None, help="write the figures as JSON here")
    ap.add_argument("--png", default=None, help="write the growth curve here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.month)
    work = Path(args.work or tempfile.mkdtemp(prefix="nyceo-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    embedded, adapters = Path(args.embedded_root or work / "embedded"), work / "adapters"
    areas = [(a, BOROUGHS if a == "city" else a.split(",")) for a in args.areas.split(";")]
    configs = [area_config(REPO / args.config, work, f"area{i}", b, embedded, adapters) for i, (_, b) in enumerate(areas)]
    print(f"load average before: {os.getloadavg()}")
    warm_up(configs[-1], args.month, embedded)
    runs = []
    for (label, _), cfg in zip(areas, configs):
        shutil.rmtree(work / cfg.stem, ignore_errors=True)  # an empty output root: nothing to skip
        r = run_area(cfg, args.month) | {"label": label} | block_geometry(cfg, args.month)
        r["seconds"] = r["acquire_s"] + r["infer_s"]
        runs.append(r)
        print(f"{label:<28} {r['chips']:4d} chips  acquire {r['acquire_s']:6.1f} s  infer {r['infer_s']:6.1f} s  "
              f"(model load {r['load_s']:4.1f} s apart)  {r['seconds'] / r['chips']:5.2f} s/chip  "
              f"peak RSS {r['peak_rss_mb']:5.0f} MB (largest block {r['max_block_read_mpx']:.1f} Mpx, resident {r['max_resident_read_mpx']:.1f} Mpx)  stack {r['stack_bytes'] / 1e6:6.1f} MB  pred {r['pred_bytes'] / 1e6:6.1f} MB")
    summary = summarize(runs)
    print(f"{runs[-1]['label']} vs {summary['reference']}: chips x{summary['chip_ratio']:.2f}, time x{summary['time_ratio']:.2f}, "
          f"time ratio / chip ratio = {summary['linearity']:.2f} (CPU-seconds: {summary['cpu_linearity']:.2f}; target "
          f"0.85-1.15); peak memory ratio {summary['memory_ratio']:.2f} (target 0.90-1.10)")
    print(f"load average after: {os.getloadavg()}")
    if args.png:
        plot(runs, Path(args.png))
    if args.json:
        from nyceo.config import load_config
        from nyceo.grid_stage import make_grid

        city = len(make_grid(load_config(area_config(REPO / args.config, work, "city", BOROUGHS, embedded, adapters))))
        Path(args.json).write_text(json.dumps({"month": args.month, "runs": runs, "summary": summary,
                                               "city_chips": city}, indent=1))


if __name__ == "__main__":
    main()
