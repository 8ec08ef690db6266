"""CPU seconds per window of each demo adapter (tiny backbone, CPU fp32), and the cost of TiM's
per-window token seeding.

    .venv/bin/python benchmarks/window_cost_bench.py [--batch 8] [--repeats 1] [--out DIR]

1. Per adapter of configs/demo.yaml: process CPU seconds and wall seconds per window for one
   batch of ``--batch`` windows (all adapters loaded up front, one warm-up window each).
2. TiM: per-window generators in one batched forward (what the runner does) vs one window per
   forward (the alternative that needs no sampler patch); printed as a ratio.
The machine is shared: the load average before and after is printed with the numbers.
Runs against the runner found first on PYTHONPATH (so an older checkout can be measured too).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default=None, help="output root for the demo adapters (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    import nyceo.model as M
    from nyceo.config import load_config

    out = Path(args.out or tempfile.mkdtemp(prefix="nyceo-window-bench-"))
    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    raw["run"]["output_root"] = str(out)
    (out / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(out / "config.yaml")
    M.ensure_demo_adapters(cfg)
    rng = np.random.default_rng(0)
    b = args.batch
    x = {"S2L2A": rng.uniform(0, 5000, (b, 12, 4, 224, 224)).astype(np.float32),
         "S1RTC": rng.uniform(-25, 0, (b, 2, 4, 224, 224)).astype(np.float32),
         "DEM": rng.uniform(0, 120, (b, 1, 224, 224)).astype(np.float32)}
    origins = [(0, 224 * i) for i in range(b)]
    runner = M.AdapterRunner(cfg, device="cpu")
    runner.load()
    has_origins = "origins" in inspect.signature(runner.predict_proba).parameters

    def run(name: str, idx: list[int]) -> None:
        kw = {"origins": [origins[i] for i in idx]} if has_origins else {}
        runner.predict_proba(name, {m: a[idx] for m, a in x.items()}, **kw)

    def timed(fn) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.repeats):
            fn()
        return (time.process_time() - c0) / args.repeats, (time.perf_counter() - t0) / args.repeats

    print(f"load average before: {os.getloadavg()}, torch threads {__import__('torch').get_num_threads()}, "
          f"origins supported: {has_origins}")
    figures: dict[str, dict] = {}
    for name in cfg.infer.adapters:
        run(name, [0])  # warm-up
        cpu, wall = timed(lambda: run(name, list(range(b))))
        figures[name] = {"cpu_s_per_window": cpu / b, "wall_s_per_window": wall / b}
        print(f"{name:<14} {cpu / b:.3f} CPU s/window  {wall / b:.3f} wall s/window  (batch {b})")
    tim = next(n for n, a in cfg.infer.adapters.items() if a.backbone.endswith("_tim"))
    batched, _ = timed(lambda: run(tim, list(range(b))))
    single, _ = timed(lambda: [run(tim, [i]) for i in range(b)])
    print(f"{tim}: batched {batched / b:.3f} CPU s/window, one window per forward {single / b:.3f}: "
          f"ratio single/batched {single / batched:.2f}")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"adapters": figures, "tim_single_over_batched": single / batched,
                                               "batch": b}, indent=1))


if __name__ == "__main__":
    main()
