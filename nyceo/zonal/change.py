"""Change areas per zone, read from the change stage's outputs when they exist (optional input).

Reads the change stage's city transition raster of each comparison ``<pair>`` (e.g. ``mom``, ``yoy``):
``<output_root>/<YYYY-MM>/change/<adapter>/<pair>/nyc_transition.tif`` (or ``<pair>/nyc.tif``), uint8,
255 nodata, code names in the band tag ``CODES`` (JSON {code: name}, as the change stage writes
them), ``CLASS_NAMES`` (JSON list, index = code) or ``CLASS_<code>`` tags;
the dataset tag ``NYCEO_INPUT_KEY`` identifies its content. A raster on another grid than the
prediction store is resampled onto it (nearest). Per zone the output has one column per code:
``change_<pair>_<code name>_km2``. No change folder: no columns (and the zonal key is unchanged).
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import rasterio
from rasterio.warp import Resampling, reproject

from nyceo.config import PipelineConfig
from nyceo.io import join
from nyceo.paths import month_dir
from nyceo.zonal import remote
from nyceo.zonal.coverage import RasterGrid
from nyceo.zonal.engine import NODATA, Compact

log = logging.getLogger("nyceo.zonal")


def change_files(config: PipelineConfig, month: str, adapter: str) -> list[tuple[str, str]]:
    root = join(month_dir(config, month), "change", adapter)
    out = []
    for pair in remote.subdirs(root):
        found = next((f for f in (join(root, pair, "nyc_transition.tif"), join(root, pair, "nyc.tif")) if remote.is_file(f)), None)
        if found:
            out.append((pair, found))
    return out


def change_fingerprint(config: PipelineConfig, month: str, adapter: str) -> list[list[str]]:
    """(pair, content key or sha256) of each change raster read: part of the zonal key."""
    out = []
    for pair, path in change_files(config, month, adapter):
        try:
            with remote.open_raster(path) as ds:
                out.append([pair, ds.tags().get("NYCEO_INPUT_KEY") or remote.sha256_of(path)])
        except rasterio.errors.RasterioIOError:
            out.append([pair, "unreadable"])
    return out


def code_names(ds: rasterio.DatasetReader) -> dict[int, str]:
    tags = ds.tags(1) | ds.tags()
    if "CODES" in tags:
        try:
            return {int(k): str(v) for k, v in json.loads(tags["CODES"]).items()}
        except (json.JSONDecodeError, ValueError, AttributeError):
            pass
    if "CLASS_NAMES" in tags:
        try:
            return {i: str(n) for i, n in enumerate(json.loads(tags["CLASS_NAMES"]))}
        except json.JSONDecodeError:
            pass
    return {int(k[6:]): v for k, v in tags.items() if re.fullmatch(r"CLASS_\d+", k)}


def read_on_grid(path: str, grid: RasterGrid) -> tuple[np.ndarray, dict[int, str]]:
    with remote.open_raster(path) as ds:
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
        if codes.dtype != np.uint8:
            log.warning("change raster %s is %s, not uint8 transition codes; its areas are omitted", path, codes.dtype)
            continue
        hist = compact.histograms(compact.gather(codes)) * km2
        for code in np.flatnonzero(hist.sum(axis=0)):  # the codes found in the zones (every entry weighs > 0)
            if code != NODATA:
                cols[f"change_{pair}_{_slug(names.get(int(code), f'code{int(code)}'))}_km2"] = hist[:, code]
    return pd.DataFrame(cols, index=pd.RangeIndex(compact.n_zones))
