"""Zonal benchmark: class areas of the 262 NTAs over a city-size class raster, ours vs rasterstats.

Same inputs for every run: the demo city's area grid (4928 x 4928 px at 10 m), the 262 2020 NTAs, a
seeded uint8 class map with 5 classes and 255 nodata (a second seed for the second month), and for the
probability-weighted table five p*254 uint8 layers consistent with it.

- reference: rasterstats 0.21 ``zonal_stats(categorical=True)`` (pixel-centre rule, counts per class;
  for the probability-weighted table also one ``sum`` pass per class);
- ours, first month: ``nyceo.zonal`` with an empty coverage cache — exactextract coverage of all
  polygons in one call, split into interior and edge entries, written to the cache, then the table
  (class areas, shares, groups; with ``probability`` the expected areas too);
- ours, cached month: the coverage read back from the cache (key, one file read), then the same table
  for month 2;
- exactextract's coverage pass alone (the ``count`` operation: every polygon/cell intersection, no
  per-cell output): the floor of any first month with exact fractional coverage.

Two tables are measured (``--no-probability``: the first only): class areas, and class areas +
probability-weighted areas. Each is timed best of ``--repeats``, interleaved (reference, first, cached,
reference, ...) so load on a shared machine hits all alike; wall and CPU seconds. Prints, side by side,
ours first month, ours cached month, rasterstats, reference ÷ ours for both months (target >= 5) and
second ÷ first; then the parts of one first and one cached month, and how far the two methods' areas
differ. rasterstats is a benchmark-only dependency: ``.venv/bin/pip install rasterstats==0.21.0``.
Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/zonal_bench.py [--repeats 3] [--no-probability] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
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


def coverage_pass(grid: RasterGrid, layer) -> None:
    """exactextract over all polygons with the ``count`` operation: the exact coverage pass, no output."""
    import shapely
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource
    from exactextract.writer import Writer
    from pyproj import CRS

    from nyceo.zonal.extract import ZONE, _WkbSource

    class Discard(Writer):
        def add_operation(self, op) -> None: pass  # noqa: E704, ANN001
        def add_column(self, col_name: str) -> None: pass  # noqa: E704
        def add_geometry(self) -> None: pass  # noqa: E704
        def write(self, feature) -> None: pass  # noqa: E704, ANN001
        def features(self) -> list: return []  # noqa: E704

    t, (h, w) = grid.transform, (grid.height_px, grid.width_px)
    wkt = CRS.from_user_input(grid.crs).to_wkt()
    src = NumPyRasterSource(np.broadcast_to(np.zeros(1, dtype=np.uint8), (h, w)), srs_wkt=wkt,
                            xmin=t.c, ymin=t.f + h * t.e, xmax=t.c + w * t.a, ymax=t.f)
    geoms = layer.gdf.to_crs(grid.crs).geometry.values
    exact_extract(src, _WkbSource(list(shapely.to_wkb(geoms)), wkt), ["count"], include_cols=[ZONE], output=Discard())


def parts(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None) -> str:
    """Wall seconds of the parts of one first and one cached month (what load_or_compute + the table do)."""
    with tempfile.TemporaryDirectory(prefix="nyceo-zonal-bench-") as cache:
        (t_key, _), key = timed(lambda: coverage_key(grid, layer))
        (t_cov, _), compact = timed(lambda: Compact.compute(grid, layer))
        path = cache_path(cache, layer, key)
        (t_save, _), _ = timed(lambda: compact.save(path))
        (t_load, _), _ = timed(lambda: Compact.load(path))
        size_mb = Path(path).stat().st_size / 1e6
    (t_gather, _), v = timed(lambda: compact.gather(cm))
    (t_hist, _), _ = timed(lambda: compact.histograms(v))
    (t_tab, _), _ = timed(lambda: class_area_table(compact, grid, cm, CLASSES, prob, GROUPS))
    return (f"  first month: key {t_key:.3f}, exactextract coverage + interior/edge split {t_cov:.3f}, cache write "
            f"{t_save:.3f} ({size_mb:.0f} MB: {len(compact.pixels):,} entries, {compact.n_inner:,} interior), table {t_tab:.3f}\n"
            f"  cached month: key {t_key:.3f}, cache read {t_load:.3f}, table {t_tab:.3f} (per layer: gather {t_gather:.3f}, "
            f"histograms {t_hist:.3f})")


def measure(grid, nta, maps, probs, repeats: int, work: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """Best (wall, cpu) of reference / first / cached over ``repeats`` interleaved runs, and the areas."""
    runs: dict[str, list[tuple[float, float]]] = {"reference": [], "first": [], "cached": []}
    for i in range(repeats):
        t, a_rs = timed(lambda: rasterstats_areas(grid, nta, maps[0], probs[0]))
        runs["reference"].append(t)
        cache = str(Path(work, f"cache{i}"))  # empty: the first month computes the coverage
        t, a_first = timed(lambda: ours(grid, nta, maps[0], probs[0], cache))
        runs["first"].append(t)
        t, _ = timed(lambda: ours(grid, nta, maps[1], probs[1], cache))
        runs["cached"].append(t)
        shutil.rmtree(cache, ignore_errors=True)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    return best, a_first, a_rs


def figures(best: dict) -> dict:
    (rw, rc), (fw, fc), (cw, cc) = best["reference"], best["first"], best["cached"]
    return {"reference_s": rw, "first_s": fw, "cached_s": cw, "ratio_first": rw / fw, "ratio_cached": rw / cw,
            "reference_cpu_s": rc, "first_cpu_s": fc, "cached_cpu_s": cc, "ratio_first_cpu": rc / fc,
            "ratio_cached_cpu": rc / cc, "second_over_first": cw / fw, "second_over_first_cpu": cc / fc}


def report(what: str, f: dict) -> None:
    print(f"\n{what}: wall s / cpu s, best of the runs")
    print(f"  {'reference: rasterstats zonal_stats (centre rule)':<50} {f['reference_s']:7.3f} / {f['reference_cpu_s']:6.3f}")
    for key, label in (("first", "ours, first month (coverage computed + cached)"), ("cached", "ours, second month (coverage reused)")):
        print(f"  {label:<50} {f[f'{key}_s']:7.3f} / {f[f'{key}_cpu_s']:6.3f}   rasterstats ÷ ours = "
              f"{f[f'ratio_{key}']:5.2f} x wall, {f[f'ratio_{key}_cpu']:5.2f} x cpu")
    print(f"  side by side (wall): first {f['first_s']:.3f} s | second {f['cached_s']:.3f} s | rasterstats "
          f"{f['reference_s']:.3f} s | rasterstats ÷ ours: first {f['ratio_first']:.2f} x, second {f['ratio_cached']:.2f} x "
          f"(target >= 5) | second ÷ first {f['second_over_first']:.3f} (cpu {f['second_over_first_cpu']:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probability", action=argparse.BooleanOptionalAction, default=True,
                    help="also the table with probability-weighted areas (both sides); default on")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    load_before = os.getloadavg()
    cfg = load_config("configs/demo.yaml")
    area = AreaGrid.from_chips(make_grid(cfg), Lattice.from_config(cfg.grid))
    grid = RasterGrid(area.transform, area.height_px, area.width_px, cfg.grid.crs)
    nta = next(layer for layer in builtin_layers(cfg) if layer.name == "nta")
    maps = [synthetic_class_map(grid.height_px, grid.width_px, s) for s in (1, 2)]
    print(f"grid {grid.height_px} x {grid.width_px} px, {len(nta.gdf)} NTAs; best of {args.repeats} (interleaved); "
          f"load average before {', '.join(f'{x:.2f}' for x in load_before)}")
    with tempfile.TemporaryDirectory(prefix="nyceo-zonal-bench-") as work:
        best, a_first, a_rs = measure(grid, nta, maps, [None, None], args.repeats, work)
        out = figures(best)
        report("class areas (km², shares, groups)", out)
        if args.probability:
            best_p, _, _ = measure(grid, nta, maps, [probabilities(m) for m in maps], args.repeats, work)
            out["with_probability"] = figures(best_p)
            report("class areas + probability-weighted areas (5 probability layers)", out["with_probability"])
    cov = [timed(lambda: coverage_pass(grid, nta))[0] for _ in range(args.repeats)]
    out["coverage_pass_s"], out["coverage_pass_cpu_s"] = min(w for w, _ in cov), min(c for _, c in cov)
    cp, cpc = out["coverage_pass_s"], out["coverage_pass_cpu_s"]
    print(f"\nfirst month floor: exactextract's coverage pass alone (op 'count', no per-cell output) {cp:.3f} s wall / "
          f"{cpc:.3f} s cpu = {cp / out['reference_s']:.2f} x rasterstats' whole class-area run ({cpc / out['reference_cpu_s']:.2f} x cpu)")
    for what, f in [("class areas", out)] + ([("+ probability", out["with_probability"])] if args.probability else []):
        print(f"  {what}: coverage pass {cp:.3f} s + a second month's work {f['cached_s']:.3f} s = {cp + f['cached_s']:.3f} s; "
              f">= 5 x on a first month needs under {f['reference_s'] / 5:.3f} s")
    print("parts, class areas (wall s):\n" + parts(grid, nta, maps[0], None))
    diff = np.abs(a_first - a_rs).sum(axis=1) / np.maximum(a_first.sum(axis=1), 1e-9)
    print(f"city total, ours vs rasterstats: {a_first.sum():.2f} vs {a_rs.sum():.2f} km²; per-NTA |diff| median "
          f"{100 * np.median(diff):.2f} %, max {100 * diff.max():.2f} % (rasterstats' centre rule)")
    out.update({"repeats": args.repeats, "n_polygons": len(nta.gdf), "probability": args.probability,
                "load_before": list(load_before), "load_after": list(os.getloadavg())})
    print(f"load average after {', '.join(f'{x:.2f}' for x in out['load_after'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
