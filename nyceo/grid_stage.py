"""Grid stage: boundaries -> chip index (GeoParquet), and its stage-contract entry.

The index carries its key (``nyceo.keys.grid_key``: lattice + chip selection, not the block size)
in the Parquet metadata, so ``status`` knows whether the file on disk is the one the
configuration asks for without rebuilding it.
"""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import geopandas as gpd

from nyceo import paths
from nyceo.boundaries import load_boroughs
from nyceo.config import GridConfig, PipelineConfig
from nyceo.contract import Stage, Status
from nyceo.grid import build_grid, counts_per_borough
from nyceo.io import upload_file_atomic
from nyceo.keys import grid_key, grid_settings


def make_grid(config: PipelineConfig) -> gpd.GeoDataFrame:
    """The chip index for the configured boroughs."""
    return build_grid(config.grid, load_boroughs(config.grid.crs))


@lru_cache(maxsize=8)
def _grid_for(grid_json: str) -> gpd.GeoDataFrame:
    grid = GridConfig.model_validate_json(grid_json)
    return build_grid(grid, load_boroughs(grid.crs))


def make_grid_cached(config: PipelineConfig) -> gpd.GeoDataFrame:
    """:func:`make_grid`, memoised per grid settings in this process (status probes ask often)."""
    return _grid_for(config.grid.model_copy(update={"block_size_chips": 1}).model_dump_json()).copy()


def write_grid(config: PipelineConfig) -> str:
    """Build the chip index and write it to ``paths.grid_index``; return the path."""
    chips = make_grid(config)
    dest = paths.grid_index(config)
    chips.attrs.update({"nyceo_key": grid_key(config), "grid": json.dumps(grid_settings(config), sort_keys=True)})
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


def published_grid_key(path: str) -> str | None:
    """The key stored in a chip index's metadata (None: no index, or one of an older layout)."""
    import fsspec
    import pyarrow.parquet as pq

    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    with fs.open(p, "rb") as f:
        meta = pq.read_schema(f).metadata or {}
    attrs = json.loads(meta.get(b"PANDAS_ATTRS", b"{}") or b"{}")
    return attrs.get("nyceo_key")


def grid_status(config: PipelineConfig, month: str = "") -> Status:
    key = grid_key(config)
    found = published_grid_key(paths.grid_index(config))
    if found == key:
        return Status("current", key=key, published_key=found, done=1, total=1)
    if found is None and not _exists(paths.grid_index(config)):
        return Status("missing", key=key, total=1)
    return Status("stale", reason="chip index made with other grid settings", key=key, published_key=found, total=1)


def _exists(path: str) -> bool:
    import fsspec

    fs, p = fsspec.core.url_to_fs(path)
    return bool(fs.exists(p))


def run_grid(config: PipelineConfig, month: str = "") -> dict[str, Any]:
    """Write the index unless it is current; the summary record of the stage."""
    dest = paths.grid_index(config)
    current = grid_status(config).state == "current"
    if not current:
        write_grid(config)
    chips = read_grid(dest)
    return {"status": "done", "cached": current, "path": dest, "chips": len(chips),
            "per_borough": counts_per_borough(chips)}


STAGE = Stage(
    name="grid",
    description="224 px chips on the fixed 10 m lattice (EPSG:32618) over the configured boroughs",
    upstreams=(),
    outputs=lambda config, month: {"index": paths.grid_index(config)},
    status=grid_status,
    inputs_key=lambda config, month: grid_key(config),
    run=run_grid,
    per_month=False,
    key_settings=("grid.* except block_size_chips",),
)
