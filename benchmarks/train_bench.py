"""Training step cost of the published recipe on CPU: seconds per chip, and the ratio to an inference forward.

    PYTHONPATH=. .venv/bin/python benchmarks/train_bench.py [--backbone terramind_v1_tiny] [--batch 4] [--steps 3]

Builds the SemanticSegmentationTask exactly as ``nyceo.train.fit.build_task`` does (frozen base, LoRA
r from the demo recipe, fresh neck/decoder/head), then times full optimisation steps (forward,
loss, backward, AdamW) on random normalised chips, and an inference forward of the same batch.
Prints s/chip for both and their ratio; the demo's training time is about
``chips x epochs x s/chip (train) + (val + test chips) x epochs x s/chip (forward)``.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import nyceo.model  # noqa: F401  (torchvision compat before terratorch)
import torch

from nyceo.config import load_config
from nyceo.train.fit import build_task


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--adapter", default="lulc_nyc")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    task = build_task(cfg, args.adapter, seed=0).train()
    k = len(cfg.infer.adapters[args.adapter].classes)
    b, t = args.batch, cfg.acquire.timesteps
    x = {"S2L2A": torch.randn(b, 12, t, 224, 224), "S1RTC": torch.randn(b, 2, t, 224, 224),
         "DEM": torch.randn(b, 1, t, 224, 224)}
    y = torch.randint(0, k, (b, 224, 224))
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    trainable = sum(p.numel() for p in task.parameters() if p.requires_grad)
    times = []
    for _ in range(args.steps + 1):
        t0 = time.perf_counter()
        loss = task.criterion(task.model(dict(x)).output, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    step = min(times[1:]) / b
    task.eval()
    with torch.inference_mode():
        task.model(dict(x))
        t0 = time.perf_counter()
        task.model(dict(x))
        fwd = (time.perf_counter() - t0) / b
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{cfg.infer.adapters[args.adapter].backbone}: trainable {trainable / 1e6:.2f} M params, batch {b}, "
          f"{args.threads} threads")
    print(f"train step {step:.3f} s/chip ({1 / step:.2f} chips/s); inference forward {fwd:.3f} s/chip; "
          f"ratio train/forward {step / fwd:.2f}; peak RSS {ru.ru_maxrss / 1024:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "backbone": cfg.infer.adapters[args.adapter].backbone, "train_s_per_chip": step, "forward_s_per_chip": fwd,
            "ratio": step / fwd, "peak_rss_mb": ru.ru_maxrss / 1024, "batch": b, "threads": args.threads}, indent=1))


if __name__ == "__main__":
    main()
