"""Evaluation of a city-sized map against a city-sized reference vs one plain confusion matrix.

Raster: the demo city's AreaGrid (232 chips, 4928 x 4928 px), seeded blocky 5-class reference and a
map that disagrees on ~24 % of pixels. Same process, same arrays:

- reference: one ``sklearn.metrics.confusion_matrix`` over the whole raster (the least any
  evaluation must do);
- ours: ``nyceo.evaluate.stage.compute`` — one matrix per chip and per borough part of each chip
  (pixel-centre borough raster), city / borough / per-chip metrics, the Olofsson estimate
  (no sweep, no probes: those are extra reads).

Prints wall seconds of both (best of N) and the ratio ours / reference (target <= 2).
Run: PYTHONPATH=. .venv/bin/python benchmarks/evaluate_bench.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix

from nyceo.config import load_config
from nyceo.evaluate.reference import ReferenceOnGrid
from nyceo.evaluate.stage import PredArrays, compute
from nyceo.grid import AreaGrid, Lattice
from nyceo.grid_stage import make_grid


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    cfg = load_config("configs/demo.yaml")
    cfg = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"probes_file": None, "sweep_classes": {}})})
    chips = make_grid(cfg)
    area = AreaGrid.from_chips(chips, Lattice.from_config(cfg.grid))
    rng = np.random.default_rng(0)
    h, w = area.height_px, area.width_px
    ref = np.kron(rng.integers(0, 5, (h // 16, w // 16)).astype(np.uint8), np.ones((16, 16), np.uint8))
    pred = ref.copy()
    flip = rng.random((h, w)) < 0.3
    pred[flip] = rng.integers(0, 5, int(flip.sum()))
    conf = rng.integers(0, 255, (h, w)).astype(np.uint8)
    classes = list(cfg.infer.adapters["lulc_nyc"].classes)
    ours, base = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        compute(cfg, "lulc_nyc", PredArrays(classes, pred, conf, None, {}), ReferenceOnGrid("r", classes, ref, {}),
                area, chips)
        t1 = time.perf_counter()
        confusion_matrix(ref.ravel(), pred.ravel(), labels=list(range(5)))
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        base.append(t2 - t1)
    print(f"area {h} x {w} px, {len(chips)} chips")
    print(f"reference (one sklearn confusion_matrix): {min(base):.2f} s")
    print(f"ours (per chip + borough, metrics, Olofsson): {min(ours):.2f} s")
    print(f"ratio ours / reference: {min(ours) / min(base):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"ours_s": min(ours), "reference_s": min(base), "ratio": min(ours) / min(base),
                                               "chips": len(chips), "repeats": args.repeats}, indent=1))


if __name__ == "__main__":
    main()
