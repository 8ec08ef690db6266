"""Benchmark of the tiled inference engine against the raw model forward, on this machine, in one run.

Prints side by side:
  1. raw forward windows/s: ``runner.predict_proba`` on random inputs (batch = infer.batch_size);
  2. engine windows/s (and area chips/s) on a pre-staged seeded stack.zarr, one adapter; ratio to 1
     (target >= 0.8);
  3. all adapters in one run vs the sum of single-adapter runs (target <= 1.0: the base is loaded
     once and each block is read once for all adapters). Adapters differ in cost (TiM generates
     tokens), so the reference is the sum of each adapter alone, i.e. "3 x single" per adapter;
  5. (with part 2) the engine vs terratorch's ``tiled_inference`` on the same runner forward, the
     same stack (read whole into memory first: that read is counted) and the same stride and batch;
     ratio = tiled_inference seconds / engine seconds (target >= 0.8: the engine also reads by block,
     blends and writes the stores);
  4. peak RSS of inference (fresh process each) over two areas of different size, same block size
     (target: the same for both; with the base backbone <= 5 GB: ``--backbone terramind_v1_base``).

Usage: .venv/bin/python benchmarks/infer_bench.py [-c configs/demo.yaml] [--backbone terramind_v1_base]
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nyceo import paths  # noqa: E402
from nyceo.config import PipelineConfig, load_config  # noqa: E402
from nyceo.grid import AreaGrid, Lattice  # noqa: E402
from nyceo.infer import run_infer  # noqa: E402
from nyceo.infer.testing import write_published_stack  # noqa: E402
from nyceo.infer.windows import WindowPlan  # noqa: E402

MONTH = "2024-07"
ROW0, COL0 = 216, 248  # a multiple of the block size: the engine area is one block


def bench_config(
    src: str, root: Path, backbone: str | None, block: int, overlap: float, shared_adapters: Path,
    batch: int | None = None,
) -> Path:
    """A copy of ``src`` writing under ``root``; ``backbone`` swaps every adapter to demo adapters of it.

    Demo adapter folders ('{output_root}/...') resolve under ``shared_adapters``: made once, by the parent.
    """
    raw = yaml.safe_load(Path(src).read_text())
    raw.pop("train", None)  # seeded untrained demo adapters: speed and memory do not depend on trained weights
    raw.setdefault("run", {})["output_root"] = str(root / "outputs")
    raw.setdefault("grid", {})["block_size_chips"] = block
    raw.setdefault("infer", {})["overlap_fraction"] = overlap
    if batch:
        raw["infer"]["batch_size"] = batch
    for ad in raw.get("infer", {}).get("adapters", {}).values():
        ad["source"] = ad["source"].replace("{output_root}", str(shared_adapters))
    if backbone:
        raw["infer"]["require_sha256"] = False
        for ad in raw["infer"]["adapters"].values():
            ad["backbone"] = backbone + ("_tim" if ad.get("tim_modalities") else "")
            ad["sha256"] = {}
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def random_inputs(batch: int, t: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "S2L2A": rng.uniform(200, 4000, (batch, 12, t, 224, 224)).astype(np.float32),
        "S1RTC": rng.uniform(-25, -3, (batch, 2, t, 224, 224)).astype(np.float32),
        "DEM": rng.uniform(0, 120, (batch, 1, 224, 224)).astype(np.float32),
    }


def clocks() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads): CPU time is robust to a shared machine."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), ru.ru_utime + ru.ru_stime


def since(start: tuple[float, float]) -> tuple[float, float]:
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def raw_forward(runner, adapter: str, cfg: PipelineConfig, n_batches: int) -> tuple[float, float]:
    """(wall, CPU) seconds per window of the bare model forward."""
    x = random_inputs(cfg.infer.batch_size, cfg.acquire.timesteps)
    runner.predict_proba(adapter, x)  # warm-up
    start = clocks()
    for _ in range(n_batches):
        runner.predict_proba(adapter, x)
    wall, cpu = since(start)
    n = n_batches * cfg.infer.batch_size
    return wall / n, cpu / n


def timed_infer(cfg: PipelineConfig, adapters: list[str], runner) -> tuple[float, float]:
    """(wall, CPU) seconds of one run_infer from scratch."""
    shutil.rmtree(Path(paths.month_dir(cfg, MONTH)) / "pred", ignore_errors=True)  # no finished blocks
    start = clocks()
    run_infer(cfg, MONTH, adapters, runner=runner)
    return since(start)


def stage_stack(cfg: PipelineConfig, rows: int, cols: int) -> AreaGrid:
    area = AreaGrid(ROW0, COL0, rows, cols, Lattice.from_config(cfg.grid))
    write_published_stack(cfg, MONTH, area, seed=5, provenance={"bench": f"{rows}x{cols}"})
    return area


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status (Linux only)")


def memory_child(config_path: str, rows: int, cols: int, adapters: str) -> None:
    """(In a fresh process) stage an area, load the model, infer; print RSS figures as JSON.

    The peak is reset after loading (``/proc/self/clear_refs``), so ``peak_infer_mb`` is the
    highest RSS while inferring (model included), not a peak of the loading itself.
    """
    import gc

    from nyceo.infer.stage import make_runner

    cfg = load_config(config_path)
    cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"output_root": f"{cfg.run.output_root}/mem{rows}x{cols}"})})
    stage_stack(cfg, rows, cols)
    names = adapters.split(",")
    runner = make_runner(cfg)
    runner.load(names)
    gc.collect()
    loaded = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
    t0 = time.perf_counter()
    run_infer(cfg, MONTH, names, runner=runner)
    print(json.dumps({"rows": rows, "cols": cols, "rss_after_load_mb": loaded, "peak_infer_mb": _status_mb("VmHWM"),
                      "lifetime_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": time.perf_counter() - t0}))


def measure_memory(config_path: Path, areas: list[tuple[int, int]], adapter: str) -> list[dict]:
    """One fresh process per area (``adapter`` may be a comma list)."""
    out = []
    for rows, cols in areas:
        res = subprocess.run(
            [sys.executable, __file__, "--mem-child", str(config_path), str(rows), str(cols), adapter],
            capture_output=True, text=True, check=True,
        )
        out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", default=str(REPO / "configs/demo.yaml"))
    ap.add_argument("--backbone", default=None, help="e.g. terramind_v1_base (demo adapters of that size)")
    ap.add_argument("--overlap", type=float, default=0.5)
    ap.add_argument("--area", default="2x2", help="engine area in chips, ROWSxCOLS (one block)")
    ap.add_argument("--mem-areas", default="1x2,2x2", help="two areas for the memory comparison")
    ap.add_argument("--mem-block", type=int, default=1, help="block size (chips) of the memory runs")
    ap.add_argument("--mem-batch", type=int, default=2, help="batch size of the memory runs (full batches in both areas)")
    ap.add_argument("--raw-batches", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of the engine runs (best taken)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: speed,adapters,tiled,memory")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    ap.add_argument("--mem-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mem_child:
        memory_child(args.mem_child[0], int(args.mem_child[1]), int(args.mem_child[2]), args.mem_child[3])
        return
    logging.basicConfig(level=logging.WARNING)
    from nyceo.infer.stage import make_runner

    rows, cols = (int(v) for v in args.area.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="nyceo-infer-bench-"))
    cfg = load_config(bench_config(args.config, tmp, args.backbone, max(rows, cols), args.overlap, tmp / "outputs"))
    runner = make_runner(cfg)  # writes the demo adapters once, for every part
    names = list(runner.adapter_names)
    print(f"model: {cfg.infer.adapters[names[0]].backbone}, adapters {names}, device {cfg.infer.device}, "
          f"batch {cfg.infer.batch_size}, overlap {args.overlap}")
    figures: dict = {"backbone": cfg.infer.adapters[names[0]].backbone, "adapters": names, "overlap": args.overlap,
                     "batch": cfg.infer.batch_size}
    if "speed" not in args.skip:
        figures |= speed_part(cfg, runner, names, rows, cols, args)
    if "memory" not in args.skip:
        mem_cfg = bench_config(args.config, tmp / "mem", args.backbone, args.mem_block, args.overlap, tmp / "outputs",
                               batch=args.mem_batch)
        areas = [tuple(int(v) for v in a.split("x")) for a in args.mem_areas.split(",")]
        figures["memory"] = measure_memory(mem_cfg, areas, ",".join(names))
        for m in figures["memory"]:
            print(f"4. peak RSS while inferring {len(names)} adapters, area {m['rows']}x{m['cols']} chips "
                  f"(block {args.mem_block}): {m['peak_infer_mb']:.0f} MB (after model load {m['rss_after_load_mb']:.0f} MB, "
                  f"+{m['peak_infer_mb'] - m['rss_after_load_mb']:.0f} MB; process lifetime peak {m['lifetime_peak_mb']:.0f} MB; "
                  f"{m['seconds']:.1f} s)")
    print(f"(scratch: {tmp})")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


def speed_part(cfg: PipelineConfig, runner, names: list[str], rows: int, cols: int, args: argparse.Namespace) -> dict:
    """Parts 1-3: raw forward, engine on a staged store, all adapters vs each alone."""
    t0 = time.perf_counter()
    runner.load(names)
    print(f"   load {time.perf_counter() - t0:.1f} s")
    area = stage_stack(cfg, rows, cols)
    n_win = len(WindowPlan.for_area(area, args.overlap).all_windows())
    raw = raw_forward(runner, names[0], cfg, args.raw_batches)
    single: dict[str, tuple[float, float]] = {}
    both = (float("inf"), float("inf"))
    for _ in range(args.repeats):  # interleaved repeats, best of each: a shared machine's load varies
        for a in names:
            t = timed_infer(cfg, [a], runner)
            single[a] = tuple(map(min, zip(single.get(a, t), t)))
        if "adapters" not in args.skip:
            both = tuple(map(min, zip(both, timed_infer(cfg, names, runner))))
    eng = [v / n_win for v in single[names[0]]]
    print(f"1. raw forward ({names[0]}): {1 / raw[0]:6.2f} windows/s wall, {1 / raw[1]:6.2f} windows/CPU-s")
    print(f"2. engine ({rows}x{cols} chips, {n_win} windows): {1 / eng[0]:6.2f} windows/s wall "
          f"({rows * cols / single[names[0]][0]:.2f} area chips/s), {1 / eng[1]:6.2f} windows/CPU-s; "
          f"engine/raw = {raw[0] / eng[0]:.2f} wall, {raw[1] / eng[1]:.2f} CPU (target >= 0.8)")
    out = {"raw_s_per_window": raw[0], "raw_cpu_s_per_window": raw[1], "engine_s_per_window": eng[0],
           "engine_cpu_s_per_window": eng[1], "engine_windows": n_win, "area_chips": rows * cols,
           "engine_s": single[names[0]][0], "engine_over_raw": raw[0] / eng[0], "single_s": {a: v[0] for a, v in single.items()}}
    if "adapters" not in args.skip:
        for k, unit in ((0, "wall"), (1, "CPU")):
            ref = sum(v[k] for v in single.values())
            print(f"3. {len(names)} adapters in one run {both[k]:.1f} {unit}-s vs sum of single runs {ref:.1f} "
                  f"({', '.join(f'{a} {v[k]:.1f}' for a, v in single.items())}): ratio {both[k] / ref:.2f} (target <= 1.0)")
        out |= {"all_adapters_s": both[0], "sum_single_s": sum(v[0] for v in single.values()),
                "adapters_ratio": both[0] / sum(v[0] for v in single.values())}
    if "tiled" not in args.skip:
        tiled_s, tiled_windows = terratorch_tiled(cfg, runner, names[0], args.overlap, args.repeats)
        out |= {"tiled_s": tiled_s, "tiled_windows": tiled_windows, "tiled_over_engine": tiled_s / out["engine_s"]}
        print(f"5. terratorch tiled_inference ({names[0]}, {tiled_windows} windows, stack read into memory): "
              f"{tiled_s:.1f} s vs engine {out['engine_s']:.1f} s ({n_win} windows, store written): "
              f"ratio tiled/engine = {tiled_s / out['engine_s']:.2f} (target >= 0.8)")
    return out


def terratorch_tiled(cfg: PipelineConfig, runner, adapter: str, overlap: float, repeats: int) -> tuple[float, int]:
    """(best wall seconds, windows) of terratorch's tiled_inference over the staged stack, same forward.

    The whole stack is read into memory (counted), every modality made (B, C, T, H, W) as
    tiled_inference requires (DEM repeated over time, taken back before the forward); windows of
    224 px at the engine's stride, no border crop (delta 0, no padding), batches of infer.batch_size.
    """
    import torch
    import zarr
    from terratorch.tasks.tiled_inference import tiled_inference

    from nyceo.infer.stage import open_stack
    from nyceo.infer.windows import stride_px

    counted = [0]
    size = cfg.grid.chip_size_px

    def forward(x: dict) -> "torch.Tensor":
        counted[0] += x["S2L2A"].shape[0]
        inputs = {"S2L2A": x["S2L2A"].numpy(), "S1RTC": x["S1RTC"].numpy(), "DEM": x["DEM"][:, :, 0].numpy()}
        return torch.from_numpy(runner.predict_proba(adapter, inputs))

    def once() -> float:
        t0 = time.perf_counter()
        g = zarr.open_group(open_stack(cfg, MONTH)[0].path, mode="r")
        s2 = torch.from_numpy(g["s2"][:].astype(np.float32)).permute(1, 0, 2, 3)[None]  # (1, C, T, H, W)
        s1 = torch.from_numpy(g["s1"][:].astype(np.float32)).permute(1, 0, 2, 3)[None]
        dem = torch.from_numpy(g["dem"][:].astype(np.float32))[None, None, None].expand(1, 1, s2.shape[2], -1, -1)
        tiled_inference(forward, {"S2L2A": s2, "S1RTC": s1, "DEM": dem.contiguous()}, crop=size,
                        stride=stride_px(size, overlap), delta=0, padding=False, batch_size=cfg.infer.batch_size)
        return time.perf_counter() - t0

    best = min(once() for _ in range(repeats))
    return best, counted[0] // repeats


if __name__ == "__main__":
    main()
