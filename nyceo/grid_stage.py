"""Grid stage: boundaries -> chip index (GeoParquet)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import geopandas as gpd

from nyceo import paths
from nyceo.boundaries import load_boroughs
from nyceo.config import PipelineConfig
from nyceo.grid import build_grid
from nyceo.io import upload_file_atomic


def make_grid(config: PipelineConfig) -> gpd.GeoDataFrame:
    """The chip index for the configured boroughs."""
    return build_grid(config.grid, load_boroughs(config.grid.crs))


def write_grid(config: PipelineConfig) -> str:
    """Build the chip index and write it to ``paths.grid_index``; return the path."""
    chips = make_grid(config)
    dest = paths.grid_index(config)
    chips.attrs.update({"config_hash": config.config_hash(), "grid": config.grid.model_dump_json()})
    with tempfile.TemporaryDirectory(prefix="nyceo-grid-") as work:
        tmp = Path(work) / "chips.parquet"
        chips.to_parquet(tmp, schema_version="1.1.0", compression="zstd")
        upload_file_atomic(tmp, dest)  # local: temp + rename; URL: upload then move
    return dest


def read_grid(path: str) -> gpd.GeoDataFrame:
    """Read a chip index written by :func:`write_grid`."""
    try:
        return gpd.read_parquet(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"chip index {path} not found; run `nyceo grid -c CONFIG` first") from None
