"""Acquisition benchmark on the embedded city: throughput vs a plain rasterio read, store size, memory.

    .venv/bin/python benchmarks/acquire_bench.py -c configs/demo.yaml --month 2024-07

0. Generates the embedded city's month (S2, S1 of the month and its neighbours, static DEM/truth)
   into a fresh ``<out>/embedded`` and prints the time and bytes of each unit.
1. Acquires a small area (the chips of the first ``--small-blocks`` blocks) and the whole city, each
   in a fresh process (serial, one process), recording wall time and peak RSS.
   Acquisition = search + per block: SCL of every candidate date (ranking), the chosen dates'
   12 bands + SCL, S1 vv/vh, DEM onto the block grid, harmonization, gap filling, Zarr encode + write.
2. The reference re-reads exactly the assets acquisition chose (from its block records: every chosen
   S2 date's 12 bands + SCL, every chosen S1 date's vv/vh, the DEM tiles) with plain rasterio +
   WarpedVRT onto the same block grids (bilinear; SCL nearest), one file at a time, and discards the
   arrays (no ranking reads, no harmonization, no write). Ratio = reference time / acquisition time
   (target >= 0.8).
3. Prints the store's bytes on disk against the raw array size.
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

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def child(config: str, month: str, overrides: str) -> None:
    """Run one acquisition in this process; print a JSON line with time and peak RSS."""
    from nyceo.acquire import run_acquire
    from nyceo.config import load_config

    cfg = load_config(config, json.loads(overrides))
    t0 = time.perf_counter()
    result = run_acquire(cfg, month)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak_mb, "result": result}))


def run_child(config: str, month: str, overrides: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", "-c", config, "--month", month,
                          "--overrides", json.dumps(overrides)], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def reference_read(store: str) -> tuple[float, int]:
    """Plain rasterio/WarpedVRT read of the chosen assets onto each block's grid; (seconds, pixels)."""
    import pystac
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds
    from rasterio.vrt import WarpedVRT

    from nyceo.acquire.block import BlockJob
    from nyceo.acquire.store import block_records, read_side_json
    from nyceo.grid import AreaGrid, Lattice, parse_chip_id

    plan = read_side_json(store, "plan.json")
    items = {i["id"]: pystac.Item.from_dict(i) for v in plan["items"].values() for i in v}
    a = plan["area"]
    area = AreaGrid(a["row0"], a["col0"], a["n_rows"], a["n_cols"], Lattice(0.0, 5_017_600.0, 224, 10.0))
    t0, pixels = time.perf_counter(), 0
    for bid, rec in block_records(store).items():
        if rec["status"] != "done":
            continue
        job = BlockJob(bid, [parse_chip_id(c) for c in plan["blocks"][bid]], area, plan["month"], {}, 32618)
        h, w = job.spec.shape
        tr = from_bounds(*job.spec.bounds, w, h)
        reads = [(i, [*rec_s2_bands(), "SCL"]) for ids in rec["s2_scenes"].values() for i in ids]
        reads += [(i, ["vv", "vh"]) for ids in rec["s1_scenes"].values() for i in ids]
        reads += [(i, ["data"]) for i in rec["dem_scenes"]]
        for item_id, assets in reads:
            for key in assets:
                rs = Resampling.nearest if key == "SCL" else Resampling.bilinear
                with rasterio.open(items[item_id].assets[key].href) as src, WarpedVRT(
                        src, crs="EPSG:32618", transform=tr, width=w, height=h, resampling=rs) as vrt:
                    vrt.read(1)
        pixels += len(job.chips) * 224 * 224
    return time.perf_counter() - t0, pixels


def rec_s2_bands() -> list[str]:
    from nyceo.config import S2_BANDS

    return list(S2_BANDS)


def generate_city(config: str, root: str, month: str) -> None:
    """Time each unit of the embedded city's generation (what the first acquisition would build)."""
    from catalogs.embedded import EmbeddedCatalog
    from nyceo.config import load_config

    cfg = load_config(config).catalog
    cat = EmbeddedCatalog(root, cfg.embedded_seed)
    y, m = map(int, month.split("-"))
    prev, nxt = ((y, m - 1) if m > 1 else (y - 1, 12)), ((y, m + 1) if m < 12 else (y + 1, 1))
    units = [("static", cat.ensure_static), (f"S2 {month}", lambda: cat.ensure_s2_month(y, m)),
             (f"S1 {month}", lambda: cat.ensure_s1_month(y, m)),
             ("S1 neighbours", lambda: [cat.ensure_s1_month(*prev), cat.ensure_s1_month(*nxt)])]
    for name, build in units:
        t0 = time.perf_counter()
        out = build()
        folders = [Path(p).parent for p in (out if isinstance(out, list) else [out])]
        print(f"generate {name:<14}: {time.perf_counter() - t0:6.1f} s  {sum(du(str(f)) for f in folders) / 1e6:7.1f} MB")


def du(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-c", "--config", default="configs/demo.yaml")
    ap.add_argument("--month", default="2024-07")
    ap.add_argument("--small-blocks", type=int, default=2)
    ap.add_argument("--out", default=None, help="output root (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.config, args.month, args.overrides)
    from nyceo.config import load_config
    from nyceo.grid import blocks_for_chips
    from nyceo.grid_stage import make_grid

    out = args.out or tempfile.mkdtemp(prefix="nyceo-acq-bench-")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {f.read().split()[:3]} on {os.cpu_count()} cores")
    generate_city(args.config, f"{out}/embedded", args.month)
    base = load_config(args.config)
    chips = make_grid(base)
    blocks = blocks_for_chips(chips, base.grid.block_size_chips)
    small_ids = [c for b in blocks[: args.small_blocks] for c in b.chip_ids]
    runs = {}
    for name, ids in (("small", small_ids), ("city", [])):
        ov = {"run.output_root": f"{out}/{name}", "acquire.chip_ids": ids, "catalog.embedded_root": f"{out}/embedded"}
        run_child(args.config, args.month, ov)  # warm-up: the embedded city writes its COGs once
        for p in Path(out, name).glob("*/stack.zarr"):  # the month folder: published link, builds, records
            shutil.rmtree(p.parent)
        runs[name] = run_child(args.config, args.month, ov)
        runs[name]["chips"] = len(ids) or len(chips)
    store = str(Path(runs["city"]["result"]["store"]).resolve())  # the build behind the published link
    ref_s, pixels = reference_read(store)
    ours_s = runs["city"]["wall_s"]
    n_t = base.acquire.timesteps
    raw = pixels * (n_t * 12 * 2 + n_t * 2 * 4 + 4 + 2 * n_t)
    print(f"month {args.month}, {len(chips)} chips in {len(blocks)} blocks ({pixels / 1e6:.1f} Mpx written)")
    print(f"acquisition    : {ours_s:7.2f} s  {pixels / 1e6 / ours_s:6.2f} Mpx/s (search + SCL ranking + read + harmonize + fill + write)")
    print(f"rasterio+VRT   : {ref_s:7.2f} s  {pixels / 1e6 / ref_s:6.2f} Mpx/s (WarpedVRT read of the same chosen assets only)")
    print(f"throughput ratio acquisition/reference: {ref_s / ours_s:.2f} (target >= 0.8)")
    print(f"store on disk  : {du(store) / 1e6:.1f} MB vs raw arrays {raw / 1e6:.1f} MB (ratio {du(store) / raw:.2f})")
    for name in ("small", "city"):
        r = runs[name]
        print(f"peak RSS {name:<5}: {r['peak_rss_mb']:7.0f} MB for {r['chips']} chips "
              f"({r['result'].get('blocks_done', 0)} blocks; target <= 4096 MB, flat in area)")
    with open("/proc/loadavg") as f:
        print(f"load average at end: {f.read().split()[:3]}")
    figures = {k: {"wall_s": v["wall_s"], "peak_rss_mb": v["peak_rss_mb"], "chips": v["chips"]}
               for k, v in runs.items()} | {"reference_s": ref_s}
    print(json.dumps(figures, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(figures | {
            "acquire_s": ours_s, "ratio": ref_s / ours_s, "mpx": pixels / 1e6, "store_bytes": du(store),
            "raw_bytes": raw, "n_blocks": len(blocks), "month": args.month}, indent=1, default=float))


if __name__ == "__main__":
    main()
