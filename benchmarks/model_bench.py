"""Model benchmark: forward speed, adapter-swap overhead, base-once memory vs three full models.

    .venv/bin/python benchmarks/model_bench.py [--out DIR] [--base] [--mem-only] [--mem-backbone terramind_v1_base]

1. Raw forward chips/s (3 modalities x 4 timesteps x 224², CPU fp32): terramind_v1_tiny and,
   with --base, terramind_v1_base (random weights: speed does not depend on the values).
2. Swap overhead: 3 adapters interleaved per batch ÷ (3 × one adapter), one AdapterRunner.
3. Peak memory (ru_maxrss of a fresh subprocess per mode, after loading 3 adapters and one
   1-chip forward each; "above import baseline" subtracts the RSS after importing torch and
   terratorch, which every mode pays alike; ``--mem-only`` runs only this part): AdapterRunner
   (base once, all heads resident), AdapterRunner with heads_resident=false, and three separately built full models (what public code does).
Adapters are seeded demo adapters in the published format, written for the benchmarked backbone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
NAMES = ("lulc_nyc", "buildings_nyc", "lulc_alt")


def bench_config(out: Path, backbone: str, **infer):
    """The demo config with 3 non-TiM demo adapters on ``backbone`` under ``out`` (hashes unpinned)."""
    from nyceo.config import load_config

    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())["infer"]["adapters"]
    ads = {n: {**raw[n], "backbone": backbone, "sha256": {}, "source": f"{{output_root}}/{backbone}/{n}"}
           for n in ("lulc_nyc", "buildings_nyc")}
    ads["lulc_alt"] = {**ads["lulc_nyc"], "demo_seed": 404, "source": f"{{output_root}}/{backbone}/lulc_alt"}
    overrides = {"run.output_root": str(out), "infer.adapters": ads, "infer.require_sha256": False,
                 **{f"infer.{k}": v for k, v in infer.items()}}
    return load_config(REPO / "configs/demo.yaml", overrides)


def chips(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"S2L2A": rng.uniform(0, 5000, (n, 12, 4, 224, 224)).astype(np.float32),
            "S1RTC": rng.uniform(-25, 0, (n, 2, 4, 224, 224)).astype(np.float32),
            "DEM": rng.uniform(0, 100, (n, 1, 224, 224)).astype(np.float32)}


def forward_rate(backbone: str, n: int, reps: int) -> float:
    import torch

    from nyceo.model.build import build_model

    model = build_model(backbone, [], 5, 4)
    x = {k: torch.from_numpy(v if k != "DEM" else np.repeat(v[:, :, None], 4, 2)) for k, v in chips(n).items()}
    with torch.inference_mode():
        model(dict(x))  # warm-up
        t0 = time.perf_counter()
        for _ in range(reps):
            model(dict(x))
    return n * reps / (time.perf_counter() - t0)


def swap_ratio(cfg, n: int, reps: int) -> tuple[float, float]:
    """(3 adapters interleaved) / (3 x 1 adapter); rounds alternate and the fastest of each counts,
    so load from other processes on a shared machine inflates neither side."""
    from nyceo.model import AdapterRunner

    runner = AdapterRunner(cfg, device="cpu")
    x = chips(n)
    for name in NAMES:
        runner.predict_proba(name, x)  # load + warm every adapter
    single, three = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        runner.predict_proba(NAMES[0], x)
        single.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for name in NAMES:
            runner.predict_proba(name, x)
        three.append(time.perf_counter() - t0)
    return min(three) / (3 * min(single)), min(single) / n


def swap_cost(cfg, switches: int) -> float:
    """Seconds per adapter switch alone (LoRA slot + neck/decoder/head), no forward."""
    from nyceo.model import AdapterRunner

    runner = AdapterRunner(cfg, device="cpu")
    runner.load(list(NAMES))
    runner._activate(NAMES[0])
    t0 = time.perf_counter()
    for i in range(switches):
        runner._activate(NAMES[(i + 1) % len(NAMES)])
    return (time.perf_counter() - t0) / switches


def mem_child(mode: str, out: Path, backbone: str) -> None:
    """Runs in a fresh process: load 3 adapters the ``mode`` way, 1 forward each, print peak RSS."""
    import psutil
    import torch

    from nyceo.model import AdapterRunner
    from nyceo.model.adapters import load_adapter_files

    torch.set_num_threads(2)
    cfg = bench_config(out, backbone, heads_resident=(mode != "lean"))
    torch_only = psutil.Process().memory_info().rss
    from terratorch.models import EncoderDecoderFactory  # noqa: F401  (every mode imports it; not model memory)

    baseline = psutil.Process().memory_info().rss
    x = chips(1)
    if mode in ("once", "lean"):
        runner = AdapterRunner(cfg, device="cpu")
        for name in NAMES:
            runner.predict_proba(name, x)
        variant = runner._variants[backbone]
        held = [variant.model, *[h for h in variant.heads.values() if h is not None]]
    else:  # three independent full models, as public implementations build them
        from peft import LoraConfig, inject_adapter_in_model

        from nyceo.model.build import build_model

        models = []
        for name in NAMES:
            m = build_model(backbone, [], 5 if name != "buildings_nyc" else 2, 4)
            inject_adapter_in_model(LoraConfig(r=16, lora_alpha=32, target_modules=["attn.qkv", "attn.proj"]), m.encoder)
            files = load_adapter_files(name, cfg)
            m.load_state_dict({**files.lora, **files.head_tensors()}, strict=False)
            models.append(m.eval())
        for m in models:
            with torch.inference_mode():
                m({k: torch.from_numpy(v if k != "DEM" else np.repeat(v[:, :, None], 4, 2)) for k, v in x.items()})
        held = models
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tensors = {t.data_ptr(): t.numel() * t.element_size() for m in held for t in m.state_dict().values()}
    print(json.dumps({"mode": mode, "peak_bytes": peak, "baseline_bytes": baseline, "torch_baseline_bytes": torch_only,
                      "weights_bytes": sum(tensors.values())}))


def memory(out: Path, backbone: str) -> dict[str, dict]:
    res = {}
    for mode in ("once", "lean", "separate"):
        proc = subprocess.run([sys.executable, __file__, "--mem-child", mode, "--out", str(out),
                               "--mem-backbone", backbone], capture_output=True, text=True, check=True)
        res[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "bench_model")
    ap.add_argument("--base", action="store_true", help="also time terramind_v1_base forwards")
    ap.add_argument("--mem-backbone", default="terramind_v1_base")
    ap.add_argument("--mem-child", default=None)
    ap.add_argument("--skip-speed", "--mem-only", action="store_true", help="only the memory comparison")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    if args.mem_child:
        return mem_child(args.mem_child, args.out, args.mem_backbone)
    import torch

    from nyceo.model import ensure_demo_adapters

    torch.set_num_threads(2)
    for backbone in {"terramind_v1_tiny", args.mem_backbone}:
        ensure_demo_adapters(bench_config(args.out, backbone))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU fp32")
    figures: dict = {"mem_backbone": args.mem_backbone}
    if not args.skip_speed:
        figures["forward_tiny_chips_per_s"] = forward_rate("terramind_v1_tiny", 4, 3)
        print(f"forward terramind_v1_tiny: {figures['forward_tiny_chips_per_s']:7.2f} chips/s")
        if args.base:
            figures["forward_base_chips_per_s"] = forward_rate("terramind_v1_base", 1, 2)
            print(f"forward terramind_v1_base: {figures['forward_base_chips_per_s']:7.2f} chips/s")
        ratio, per_chip = swap_ratio(bench_config(args.out, "terramind_v1_tiny"), 4, 4)
        figures |= {"swap_ratio": ratio, "single_s_per_chip": per_chip}
        print(f"swap (tiny, 4-chip batches): 3 adapters / (3 x 1 adapter) = {ratio:.3f}   "
              f"(1 adapter: {per_chip * 1e3:.0f} ms/chip through AdapterRunner)")
        for backbone in ("terramind_v1_tiny", args.mem_backbone):
            resident = swap_cost(bench_config(args.out, backbone), 300)
            lean = swap_cost(bench_config(args.out, backbone, heads_resident=False), 6)
            print(f"one adapter switch on {backbone}: {resident * 1e6:8.1f} us resident, "
                  f"{lean * 1e3:7.1f} ms with heads_resident=false")
    mem = memory(args.out, args.mem_backbone)
    figures["memory"] = mem
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    ref = mem["separate"]["peak_bytes"]
    ref_model = ref - mem["separate"]["baseline_bytes"]
    print(f"peak memory, 3 adapters on {args.mem_backbone} (1-chip forward each); import baseline "
          f"(torch + terratorch) {mem['separate']['baseline_bytes'] / 2**30:.2f} GiB, of which torch "
          f"{mem['separate']['torch_baseline_bytes'] / 2**30:.2f} GiB:")
    for mode, label in (("separate", "3 separate full models"), ("once", "base once, heads resident"),
                        ("lean", "base once, heads_resident=false")):
        peak, above = mem[mode]["peak_bytes"], mem[mode]["peak_bytes"] - mem[mode]["baseline_bytes"]
        w, w_ref = mem[mode]["weights_bytes"], mem["separate"]["weights_bytes"]
        print(f"  {label:<32} peak {peak / 2**30:5.2f} GiB ratio {peak / ref:4.2f} | above import baseline "
              f"{above / 2**30:5.2f} GiB ratio {above / ref_model:4.2f} | weights held {w / 2**30:5.2f} GiB "
              f"ratio {w / w_ref:4.2f}")


if __name__ == "__main__":
    main()
