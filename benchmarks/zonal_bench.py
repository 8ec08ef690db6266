"""Zonal benchmark: class areas of the 262 NTAs over a city-size class raster, ours vs rasterstats.

Same inputs for every run: the demo city's area grid (4928 x 4928 px at 10 m), the 262 2020 NTAs, a
seeded uint8 class map with 5 classes and 255 nodata (a second seed for the second month).

- reference: rasterstats 0.21 ``zonal_stats(categorical=True)`` (pixel-centre rule, counts per class;
  with ``--probability`` also one ``sum`` pass per class for the probability-weighted areas);
- ours, first month: ``nyceo.zonal`` with an empty coverage cache — exactextract coverage of all
  polygons in one call, written to the cache, then the table (class areas, shares, groups);
- ours, cached month: the coverage read back from the cache, then the same table for month 2.

Each is timed best of ``--repeats``, interleaved (reference, first, cached, reference, ...) so load on a
shared machine hits all alike; wall and CPU seconds. Prints reference ÷ ours for the first and the
cached month side by side (target >= 5 for both), second ÷ first, a breakdown of one first month, and
how far the two methods' areas differ. rasterstats is a benchmark-only dependency:
``.venv/bin/pip install rasterstats==0.21.0``. Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/zonal_bench.py [--repeats 3] [--probability]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import zoom

from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.grid_stage import make_grid
from nyceo.zonal.coverage import Compact, RasterGrid, cache_path, coverage_key, load_or_compute
from nyceo.zonal.engine import Groups, class_area_table
from nyceo.zonal.layers import builtin_layers

CLASSES = ["water", "developed", "forest", "herbaceous", "other"]
GROUPS = Groups(("developed",), ("forest", "herbaceous"))


def synthetic_class_map(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(len(CLASSES), h // 64 + 2, w // 64 + 2)).astype(np.float32)
    logits = np.stack([zoom(c, 64, order=1)[:h, :w] for c in coarse])
    cm = logits.argmax(axis=0).astype(np.uint8)
    cm[rng.random((h, w)) < 0.01] = 255
    return cm


def probabilities(cm: np.ndarray) -> dict[str, np.ndarray]:
    """p*254 layers consistent with the class map (a stand-in for the store's probability)."""
    return {c: np.where(cm == 255, 255, np.where(cm == k, 200, 13)).astype(np.uint8) for k, c in enumerate(CLASSES)}


def timed(fn) -> tuple[tuple[float, float], object]:
    """((wall s, cpu s), result): the machine is shared, so CPU time is the steadier figure."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - w0, time.process_time() - c0), out


def ours(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None, cache: str) -> np.ndarray:
    compact, _ = load_or_compute(grid, layer, cache)
    table = class_area_table(compact, grid, cm, CLASSES, prob, GROUPS)
    return table[[f"{c}_km2" for c in CLASSES]].to_numpy()


def rasterstats_areas(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None) -> np.ndarray:
    from rasterstats import zonal_stats

    geoms = layer.gdf.geometry.values
    stats = zonal_stats(geoms, cm, affine=grid.transform, nodata=255, categorical=True)
    for p in (prob or {}).values():  # the probability-weighted areas: one more pass per class
        zonal_stats(geoms, p, affine=grid.transform, nodata=255, stats=["sum", "count"])
    km2 = grid.pixel_area_m2 / 1e6
    return np.array([[s.get(k, 0) * km2 for k in range(len(CLASSES))] for s in stats])


def breakdown(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None) -> str:
    """Wall seconds of the parts of one first month (what load_or_compute + the table do)."""
    with tempfile.TemporaryDirectory(prefix="nyceo-zonal-bench-") as cache:
        (t_key, _), key = timed(lambda: coverage_key(grid, layer))
        (t_cov, _), compact = timed(lambda: Compact.compute(grid, layer))
        (t_save, _), _ = timed(lambda: compact.save(cache_path(cache, layer, key)))
        (t_load, _), _ = timed(lambda: Compact.load(cache_path(cache, layer, key)))
        size_mb = Path(cache_path(cache, layer, key)).stat().st_size / 1e6
    (t_tab, _), _ = timed(lambda: class_area_table(compact, grid, cm, CLASSES, prob, GROUPS))
    return (f"first month, parts (wall s): key {t_key:.2f}, exactextract coverage {t_cov:.2f}, cache write {t_save:.2f} "
            f"({size_mb:.0f} MB, {compact.matrix.nnz:,} entries), table {t_tab:.2f}; a cached month reads it in {t_load:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probability", action="store_true", help="also probability-weighted areas (both sides)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    cfg = load_config("configs/demo.yaml")
    area = AreaGrid.from_chips(make_grid(cfg), Lattice.from_config(cfg.grid))
    grid = RasterGrid(area.transform, area.height_px, area.width_px, cfg.grid.crs)
    nta = next(layer for layer in builtin_layers(cfg) if layer.name == "nta")
    cm1, cm2 = (synthetic_class_map(grid.height_px, grid.width_px, s) for s in (1, 2))
    p1, p2 = (probabilities(cm1), probabilities(cm2)) if args.probability else (None, None)
    runs: dict[str, list[tuple[float, float]]] = {"reference": [], "first": [], "cached": []}
    with tempfile.TemporaryDirectory(prefix="nyceo-zonal-bench-") as work:
        for i in range(args.repeats):
            t, a_rs = timed(lambda: rasterstats_areas(grid, nta, cm1, p1))
            runs["reference"].append(t)
            cache = str(Path(work, f"cache{i}"))  # empty: the first month computes the coverage
            t, a_first = timed(lambda: ours(grid, nta, cm1, p1, cache))
            runs["first"].append(t)
            t, _ = timed(lambda: ours(grid, nta, cm2, p2, cache))
            runs["cached"].append(t)
            shutil.rmtree(cache, ignore_errors=True)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    ref = best["reference"]
    what = "class areas + probability-weighted areas" if args.probability else "class areas (km², shares, groups)"
    print(f"grid {grid.height_px} x {grid.width_px} px, {len(nta.gdf)} NTAs, {what}; best of {args.repeats} "
          "(interleaved); wall s / cpu s")
    print(f"{'reference  rasterstats zonal_stats (centre rule)':<52} {ref[0]:7.2f} / {ref[1]:7.2f}")
    for key, label in (("first", "ours, first month (coverage computed + cached)"), ("cached", "ours, cached month (coverage reused)")):
        w, c = best[key]
        print(f"{label:<52} {w:7.2f} / {c:7.2f}   reference ÷ ours = {ref[0] / w:5.1f} x wall, {ref[1] / c:5.1f} x cpu")
    (wf, cf), (wc, cc) = best["first"], best["cached"]
    print(f"ratio reference ÷ ours (wall): first month {ref[0] / wf:.1f} x | cached month {ref[0] / wc:.1f} x "
          f"(target >= 5 for both); second ÷ first = {wc / wf:.3f} wall, {cc / cf:.3f} cpu")
    print(breakdown(grid, nta, cm1, p1))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "reference_s": ref[0], "first_s": wf, "cached_s": wc, "ratio_first": ref[0] / wf, "ratio_cached": ref[0] / wc,
            "reference_cpu_s": ref[1], "first_cpu_s": cf, "cached_cpu_s": cc, "repeats": args.repeats,
            "n_polygons": len(nta.gdf), "probability": args.probability}, indent=1))
    diff = np.abs(a_first - a_rs).sum(axis=1) / np.maximum(a_first.sum(axis=1), 1e-9)
    print(f"city total, ours vs rasterstats: {a_first.sum():.2f} vs {a_rs.sum():.2f} km²; per-NTA |diff| median "
          f"{100 * np.median(diff):.2f} %, max {100 * diff.max():.2f} % (rasterstats' centre rule)")


if __name__ == "__main__":
    main()
