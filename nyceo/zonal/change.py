"""Change areas per zone, read from the change stage's outputs when they exist (optional input).

Expected (the change stage is built elsewhere; this reader is tolerant and documented here):
``<output_root>/<YYYY-MM>/change/<adapter>/<pair>/nyc.tif`` — one uint8 code raster per comparison
``<pair>`` (e.g. ``mom`` for M-1, ``yoy`` for M-12), 255 nodata, code names in the band tag
``CLASS_NAMES`` (JSON list, index = code) or ``CLASS_<code>`` tags, as the mosaic stage writes them;
the dataset tag ``NYCEO_INPUT_KEY`` identifies its content. A raster on another grid than the
prediction store is resampled onto it (nearest). Per zone the output has one column per code:
``change_<pair>_<code name>_km2``. No change folder: no columns (and the zonal key is unchanged).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.warp import Resampling, reproject

from nyceo.config import PipelineConfig
from nyceo.paths import month_dir
from nyceo.zonal.coverage import RasterGrid
from nyceo.zonal.engine import NODATA, Compact

log = logging.getLogger("nyceo.zonal")


def change_files(config: PipelineConfig, month: str, adapter: str) -> list[tuple[str, Path]]:
    root = Path(month_dir(config, month)) / "change" / adapter
    if not root.is_dir():
        return []
    return [(d.name, d / "nyc.tif") for d in sorted(root.iterdir()) if (d / "nyc.tif").is_file()]


def change_fingerprint(config: PipelineConfig, month: str, adapter: str) -> list[list[str]]:
    """(pair, content key or size) of each change raster read: part of the zonal key."""
    out = []
    for pair, path in change_files(config, month, adapter):
        try:
            with rasterio.open(path) as ds:
                out.append([pair, ds.tags().get("NYCEO_INPUT_KEY") or str(path.stat().st_size)])
        except rasterio.errors.RasterioIOError:
            out.append([pair, "unreadable"])
    return out


def code_names(ds: rasterio.DatasetReader) -> dict[int, str]:
    tags = ds.tags(1) | ds.tags()
    if "CLASS_NAMES" in tags:
        try:
            return {i: str(n) for i, n in enumerate(json.loads(tags["CLASS_NAMES"]))}
        except json.JSONDecodeError:
            pass
    return {int(k[6:]): v for k, v in tags.items() if re.fullmatch(r"CLASS_\d+", k)}


def read_on_grid(path: Path, grid: RasterGrid) -> tuple[np.ndarray, dict[int, str]]:
    with rasterio.open(path) as ds:
        names = code_names(ds)
        if ds.shape == (grid.height_px, grid.width_px) and ds.transform.almost_equals(grid.transform):
            return ds.read(1), names
        out = np.full((grid.height_px, grid.width_px), NODATA, dtype=np.uint8)
        reproject(rasterio.band(ds, 1), out, dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=NODATA, resampling=Resampling.nearest)
        return out, names


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def change_areas(config: PipelineConfig, month: str, adapter: str, grid: RasterGrid, compact: Compact) -> pd.DataFrame:
    """Per-zone km² of every change code of every pair found (empty frame when none)."""
    cols: dict[str, np.ndarray] = {}
    km2 = grid.pixel_area_m2 / 1e6
    for pair, path in change_files(config, month, adapter):
        try:
            codes, names = read_on_grid(path, grid)
        except rasterio.errors.RasterioIOError as exc:
            log.warning("change raster %s unreadable (%s); its areas are omitted", path, exc)
            continue
        v = compact.gather(codes)
        for code in np.unique(v[v != NODATA]):
            cols[f"change_{pair}_{_slug(names.get(int(code), f'code{int(code)}'))}_km2"] = compact.sums(v == code) * km2
    return pd.DataFrame(cols, index=pd.RangeIndex(compact.matrix.shape[0]))
