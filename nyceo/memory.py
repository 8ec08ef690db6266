"""Peak memory of acquire and infer, estimated from the configuration, and the up-front refusal of a
configuration that would not fit (``nyceo run|acquire|infer`` check it before anything starts).

The estimate is a sum of named parts, each proportional to one setting, so the refusal can name the
setting to change. Constants are calibrated against measured peak RSS (docs/FAULTS.md, section 3;
``benchmarks/memory_bench.py`` prints the estimate beside the measured peak):
- ``INFER_RUNTIME_BYTES``: Python + torch + terratorch + the built model on CPU, before any block;
- ``ACQUIRE_RUNTIME_BYTES``: one process reading scenes (rasterio/GDAL, xarray, zarr).
No torch import here: only sizes from the configuration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nyceo.config import PipelineConfig

GIB = 1024**3
INFER_RUNTIME_BYTES = int(1.6 * GIB)  # `nyceo infer`, tiny backbone, 4 chips: 2.15 GB peak RSS measured
ACQUIRE_RUNTIME_BYTES = int(0.28 * GIB)  # `nyceo acquire`, 1-chip blocks: 0.34 GB peak RSS measured
S2_BANDS, S1_BANDS, DEM_BANDS = 12, 2, 1
STACK_BYTES_PER_PX_T = S2_BANDS * 2 + S1_BANDS * 4 + 2  # int16 S2, float32 S1, validity flags
ACQUIRE_WORKING_COPIES = 4  # float32 reads of the block's candidate scenes before compositing
ACTIVATION_COPIES = 32  # live (token, dim) float32 tensors in one transformer block (qkv, MLP 4x, norms)
PATCH_PX = 16
# TerraMind sizes (embedding width, depth): parameters ~ 12 * depth * width^2
BACKBONE_SIZES = {"tiny": (192, 12), "small": (384, 12), "base": (768, 12), "large": (1024, 24)}


@dataclass
class MemoryEstimate:
    """Estimated peak bytes of one command, by part; ``settings`` names the knob of each part."""

    stage: str
    parts: dict[str, int] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        return ", ".join(f"{k} {v / GIB:.1f} GB" for k, v in sorted(self.parts.items(), key=lambda kv: -kv[1]))


def chip_stack_bytes(config: PipelineConfig) -> int:
    """Bytes of one chip of stack (all timesteps, S2 + S1 + DEM): ~7 MB at 224 px and 4 timesteps."""
    px2 = config.grid.chip_size_px**2
    return px2 * (config.acquire.timesteps * STACK_BYTES_PER_PX_T + DEM_BANDS * 4)


def backbone_size(name: str) -> tuple[int, int]:
    """(embedding width, depth) of a TerraMind backbone name; base when the name says no size."""
    found = re.search(r"_(tiny|small|base|large)", name)
    return BACKBONE_SIZES[found.group(1) if found else "base"]


def infer_estimate(config: PipelineConfig) -> MemoryEstimate:
    inf, px = config.infer, config.grid.chip_size_px
    block = inf.block_size_chips or config.grid.block_size_chips
    adapters = list(inf.adapters.values())
    width, depth = max((backbone_size(a.backbone) for a in adapters), default=BACKBONE_SIZES["base"])
    tokens = (px // PATCH_PX) ** 2 * 3 * (2 if any(a.tim_modalities for a in adapters) else 1)
    params = 12 * depth * width**2
    heads = len(adapters) if inf.heads_resident else 1
    classes = sum(len(a.classes) + 1 for a in adapters)  # probability sums + weights per adapter
    est = MemoryEstimate("infer")
    est.parts["runtime"] = INFER_RUNTIME_BYTES
    est.parts["stack block"] = (block + 2) ** 2 * chip_stack_bytes(config) * (2 if inf.prefetch_blocks else 1)
    est.parts["blend accumulators"] = (block * px) ** 2 * classes * 4
    est.parts["model"] = params * 4 * (1 + heads)  # backbone + a decoder of about its size per resident adapter
    est.parts["batch"] = inf.batch_size * (px**2 * config.acquire.timesteps * 15 * 4
                                           + tokens * width * 4 * ACTIVATION_COPIES + width // 64 * tokens**2 * 4)
    est.settings = {"stack block": "infer.block_size_chips (or infer.prefetch_blocks: false)",
                    "blend accumulators": "infer.block_size_chips", "batch": "infer.batch_size",
                    "model": "infer.heads_resident: false", "runtime": "run.memory_limit_gb"}
    return est


def acquire_estimate(config: PipelineConfig, workers: int) -> MemoryEstimate:
    """``workers`` processes each acquiring one block of grid.block_size_chips^2 chips."""
    block_chips = config.grid.block_size_chips**2
    per_worker = block_chips * chip_stack_bytes(config) * ACQUIRE_WORKING_COPIES
    est = MemoryEstimate("acquire")
    est.parts["runtime"] = ACQUIRE_RUNTIME_BYTES * (workers + (workers > 1))
    est.parts["blocks in flight"] = per_worker * workers * config.dask.threads_per_worker
    est.settings = {"blocks in flight": "grid.block_size_chips (or dask.n_workers)", "runtime": "dask.n_workers"}
    return est


def flow_workers(config: PipelineConfig) -> int:
    from nyceo.cluster import machine_cores

    return config.dask.n_workers or max(1, machine_cores() // config.dask.threads_per_worker)


def available_bytes() -> int:
    """Memory available to a new process now (psutil; else MemAvailable of /proc/meminfo)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("cannot tell the available memory (no psutil, no MemAvailable in /proc/meminfo)")


def check_memory(config: PipelineConfig, stages: list[str], workers: int = 1) -> None:
    """Refuse (ValueError naming the estimate, the part, the setting and the override) when the peak of
    ``stages`` (acquire, infer) would exceed run.memory_limit_gb (default: the memory available now)."""
    limit_gb = config.run.memory_limit_gb
    if limit_gb == 0:
        return
    limit = int(limit_gb * GIB) if limit_gb else available_bytes()
    ests = [infer_estimate(config) if s == "infer" else acquire_estimate(config, workers) for s in stages]
    for est in ests:
        if est.total_bytes <= limit:
            continue
        part = max(est.parts, key=lambda k: est.parts[k])
        where = f"run.memory_limit_gb ({limit_gb} GB)" if limit_gb else "available on this machine"
        raise ValueError(
            f"{est.stage} would need about {est.total_bytes / GIB:.1f} GB at peak ({est.describe()}), more than "
            f"the {limit / GIB:.1f} GB {where}. The largest part is '{part}': lower {est.settings.get(part, part)}; "
            f"or set run.memory_limit_gb to the memory you know is there (0 = no check).")
