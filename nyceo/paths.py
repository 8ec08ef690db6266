"""The output layout, in one place. Every stage asks here where to read and write."""

from __future__ import annotations

import re

from nyceo.config import PipelineConfig
from nyceo.io import join

MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    if not MONTH_RE.match(month):
        raise ValueError(f"month '{month}' is not YYYY-MM (e.g. 2024-07)")
    return month


def grid_index(config: PipelineConfig) -> str:
    """GeoParquet chip index (not month-specific: the lattice is fixed)."""
    return join(config.run.output_root, "grid", "chips.parquet")


def month_dir(config: PipelineConfig, month: str) -> str:
    return join(config.run.output_root, check_month(month))


def stack_store(config: PipelineConfig, month: str) -> str:
    """Zarr v3 input stack of a month (S2, S1, DEM, validity) on the chip grid."""
    return join(month_dir(config, month), "stack.zarr")


def pred_store(config: PipelineConfig, month: str, adapter: str) -> str:
    """Zarr v3 prediction store of one adapter for a month."""
    return join(month_dir(config, month), "pred", f"{adapter}.zarr")


def area_slug(name: str) -> str:
    """'Staten Island' -> 'staten_island'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
