"""Zonal benchmark: class areas of the 262 NTAs over a city-size class raster.

Compares, on the same inputs (the demo city's area grid, 4928 x 4928 px at 10 m, a seeded uint8
class map with 5 classes and 255 nodata):

- ours, first month: exactextract coverage (cold cache) + sparse products for every class
  (area, probability not included) - ``nyceo.zonal``;
- ours, second month: coverage read from the on-disk cache + the same products;
- rasterstats 0.21 ``zonal_stats(categorical=True)`` (pixel-centre rule, counts per class).

Prints the times and the ratios (target: rasterstats / ours-first >= 5; second / first << 1), and
how far the two methods' city totals differ. rasterstats is a benchmark-only dependency:
``.venv/bin/pip install rasterstats==0.21.0``. Run from the repository root:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/zonal_bench.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
from scipy.ndimage import zoom

from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.grid_stage import make_grid
from nyceo.zonal.coverage import RasterGrid, load_or_compute
from nyceo.zonal.engine import Compact, Groups, class_area_table
from nyceo.zonal.layers import builtin_layers

CLASSES = ["water", "developed", "forest", "herbaceous", "other"]


def synthetic_class_map(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(len(CLASSES), h // 64 + 2, w // 64 + 2)).astype(np.float32)
    logits = np.stack([zoom(c, 64, order=1)[:h, :w] for c in coarse])
    cm = logits.argmax(axis=0).astype(np.uint8)
    cm[rng.random((h, w)) < 0.01] = 255
    return cm


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    """(wall, cpu) seconds: the machine is shared, so CPU time is the steadier figure."""
    return time.perf_counter() - t[0], time.process_time() - t[1]


def ours(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None, cache: str):
    t0 = _clock()
    compact, _ = load_or_compute(grid, layer, cache)
    table = class_area_table(compact, grid, cm, CLASSES, prob, Groups(("developed",), ("forest",)))
    return _since(t0), table[[f"{c}_km2" for c in CLASSES]].to_numpy()


def rasterstats_areas(grid: RasterGrid, layer, cm: np.ndarray, prob: dict | None):
    from rasterstats import zonal_stats

    t0 = _clock()
    geoms = layer.gdf.geometry.values
    stats = zonal_stats(geoms, cm, affine=grid.transform, nodata=255, categorical=True)
    for p in (prob or {}).values():  # the probability-weighted areas: one more pass per class
        zonal_stats(geoms, p, affine=grid.transform, nodata=255, stats=["sum", "count"])
    dt = _since(t0)
    km2 = grid.pixel_area_m2 / 1e6
    return dt, np.array([[s.get(k, 0) * km2 for k in range(len(CLASSES))] for s in stats])


def probabilities(cm: np.ndarray) -> dict[str, np.ndarray]:
    """p*254 layers consistent with the class map (a stand-in for the store's probability)."""
    return {c: np.where(cm == 255, 255, np.where(cm == k, 200, 13)).astype(np.uint8) for k, c in enumerate(CLASSES)}


def main() -> None:
    cfg = load_config("configs/demo.yaml")
    area = AreaGrid.from_chips(make_grid(cfg), Lattice.from_config(cfg.grid))
    grid = RasterGrid(area.transform, area.height_px, area.width_px, cfg.grid.crs)
    nta = next(layer for layer in builtin_layers(cfg) if layer.name == "nta")
    cm1, cm2 = synthetic_class_map(grid.height_px, grid.width_px, 1), synthetic_class_map(grid.height_px, grid.width_px, 2)
    print(f"grid {grid.height_px} x {grid.width_px} px, {len(nta.gdf)} NTAs")
    for label, p1, p2 in (("class areas only", None, None),
                          ("class areas + probability-weighted areas", probabilities(cm1), probabilities(cm2))):
        with tempfile.TemporaryDirectory(prefix="nyceo-zonal-bench-") as cache:
            t_first, a_first = ours(grid, nta, cm1, p1, cache)
            t_second, _ = ours(grid, nta, cm2, p2, cache)
        t_rs, a_rs = rasterstats_areas(grid, nta, cm1, p1)
        print(f"== {label} (wall s / cpu s)")
        print(f"ours, first month (coverage computed): {t_first[0]:7.2f} / {t_first[1]:7.2f}")
        print(f"ours, second month (coverage cached):  {t_second[0]:7.2f} / {t_second[1]:7.2f}")
        print(f"rasterstats:                           {t_rs[0]:7.2f} / {t_rs[1]:7.2f}")
        for name, i in (("wall", 0), ("cpu", 1)):
            print(f"[{name}] rasterstats / ours-first = {t_rs[i] / t_first[i]:5.1f} x, rasterstats / ours-second = "
                  f"{t_rs[i] / t_second[i]:5.1f} x (target >= 5), second / first = {t_second[i] / t_first[i]:5.3f}")
    diff = np.abs(a_first - a_rs).sum(axis=1) / np.maximum(a_first.sum(axis=1), 1e-9)
    print(f"city total, ours vs rasterstats: {a_first.sum():.2f} vs {a_rs.sum():.2f} km²; per-NTA |diff| median "
          f"{100 * np.median(diff):.2f} %, max {100 * diff.max():.2f} % (rasterstats' centre rule)")


if __name__ == "__main__":
    main()
