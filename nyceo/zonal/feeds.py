"""Heat-island and stormwater feeds: impervious / vegetation shares on a 100 m grid and per zone, and
the month's model-independent median NDVI from the stack's clear Sentinel-2 observations.

Feed grid: cells of ``zonal.feed_cell_m`` (a multiple of the 10 m pixel), aligned to the lattice
origin, so each cell is exactly ``f x f`` pixels (f = 10 at 100 m). A cell's share is counted over
its mapped (non-nodata) pixels; ``valid_fraction`` says how many of its pixels were mapped.

NDVI: per pixel and timestep ``(B08 - B04) / (B08 + B04)`` on harmonized L2A digital numbers, only
where ``s2_valid == 1`` (observed clear; filled values are not observations); per pixel the median
over those timesteps; per cell / zone the mean of the pixel medians (coverage-weighted for zones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.io import MemoryFile

from nyceo.zonal.coverage import RasterGrid
from nyceo.zonal.engine import NODATA, Compact, block_counts


class FeedError(ValueError):
    """A feed cannot be computed from the inputs given."""


def feed_geometry(grid: RasterGrid, origin: tuple[float, float], cell_m: float) -> tuple[int, tuple[int, int], Affine]:
    """(pixels per cell, (y, x) padding in pixels, transform of the feed grid) for ``grid``."""
    res = grid.transform.a
    factor = cell_m / res
    if abs(factor - round(factor)) > 1e-9 or factor < 1:
        raise FeedError(f"zonal.feed_cell_m={cell_m} is not a multiple of the {res:g} m pixel; use e.g. 100")
    f = int(round(factor))
    minx, _, _, maxy = grid.bounds
    ox = int(round((minx - origin[0]) / res)) % f
    oy = int(round((origin[1] - maxy) / res)) % f
    transform = Affine(cell_m, 0.0, minx - ox * res, 0.0, -cell_m, maxy + oy * res)
    return f, (oy, ox), transform


def share_grid(class_map: np.ndarray, classes: list[str], members: list[str], factor: int,
               offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(share of ``members`` among mapped pixels, mapped fraction) per feed cell; NaN share where unmapped."""
    valid = class_map != NODATA
    mask = np.isin(class_map, [classes.index(c) for c in members if c in classes])
    hit, n_valid = block_counts(mask, valid, factor, offset)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_valid > 0, hit / n_valid, np.nan).astype(np.float32)
    return share, (n_valid / factor**2).astype(np.float32)


def ndvi_median(s2_b04: np.ndarray, s2_b08: np.ndarray, s2_valid: np.ndarray) -> np.ndarray:
    """Per-pixel median NDVI over clear timesteps (``s2_valid == 1``); NaN without one. Inputs (time, y, x)."""
    red = s2_b04.astype(np.float32)
    nir = s2_b08.astype(np.float32)
    denom = nir + red
    ok = (s2_valid == 1) & (denom > 0) & (s2_b04 != -32768) & (s2_b08 != -32768)
    with np.errstate(invalid="ignore", divide="ignore"):
        ndvi = np.where(ok, (nir - red) / np.where(denom > 0, denom, 1), np.nan)
    out = np.full(ndvi.shape[1:], np.nan, dtype=np.float32)
    any_ok = ok.any(axis=0)
    out[any_ok] = np.nanmedian(ndvi[:, any_ok], axis=0)
    return out


def stack_ndvi(stack_path: str, band_names: list[str], strip_px: int) -> np.ndarray:
    """Median NDVI of a whole stack.zarr, read one strip of rows at a time (bounded memory)."""
    import zarr

    g = zarr.open_group(stack_path, mode="r")
    if "B04" not in band_names or "B08" not in band_names:
        raise FeedError(f"stack {stack_path} has bands {band_names}; NDVI needs B04 and B08 (acquire.s2_bands)")
    i4, i8 = band_names.index("B04"), band_names.index("B08")
    _, _, h, w = g["s2"].shape
    out = np.full((h, w), np.nan, dtype=np.float32)
    for y0 in range(0, h, strip_px):
        ys = slice(y0, min(h, y0 + strip_px))
        out[ys] = ndvi_median(np.asarray(g["s2"][:, i4, ys, :]), np.asarray(g["s2"][:, i8, ys, :]),
                              np.asarray(g["s2_valid"][:, ys, :]))
    return out


def mean_grid(values: np.ndarray, factor: int, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(mean of non-NaN ``values``, fraction of pixels with a value) per feed cell."""
    ok = ~np.isnan(values)
    oy, ox = offset
    h, w = values.shape
    hh, ww = -(-(h + oy) // factor) * factor, -(-(w + ox) // factor) * factor
    total = np.zeros((hh, ww), dtype=np.float64)
    count = np.zeros((hh, ww), dtype=np.float64)
    total[oy:oy + h, ox:ox + w] = np.where(ok, values, 0)
    count[oy:oy + h, ox:ox + w] = ok
    s = total.reshape(hh // factor, factor, ww // factor, factor).sum(axis=(1, 3))
    n = count.reshape(hh // factor, factor, ww // factor, factor).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, s / n, np.nan).astype(np.float32), (n / factor**2).astype(np.float32)


def zone_mean(compact: Compact, values: np.ndarray) -> np.ndarray:
    """Coverage-weighted mean of non-NaN per-pixel ``values`` per zone (NaN where a zone has none)."""
    v = compact.gather(values)
    ok = ~np.isnan(v)
    with np.errstate(invalid="ignore", divide="ignore"):
        return compact.sums(np.where(ok, v, 0)) / compact.sums(ok)


def write_float_cog(bands: dict[str, np.ndarray], transform: Affine, crs: str, dest: str | Path,
                    tags: dict[str, str], blocksize_px: int = 256) -> Path:
    """Multi-band float32 COG (NaN nodata, AVERAGE overviews) at the local path ``dest`` (stage it)."""
    names = list(bands)
    h, w = bands[names[0]].shape
    profile = dict(driver="GTiff", width=w, height=h, count=len(names), dtype="float32", crs=crs,
                   transform=transform, nodata=float("nan"))
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            for i, name in enumerate(names, start=1):
                ds.write(bands[name].astype(np.float32), i)
                ds.set_band_description(i, name)
            ds.update_tags(**tags)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(dest), driver="COG", BLOCKSIZE=blocksize_px, COMPRESS="ZSTD",
                                 PREDICTOR="YES", OVERVIEW_RESAMPLING="AVERAGE")
    return Path(dest)
