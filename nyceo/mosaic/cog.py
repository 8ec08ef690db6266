"""Write one single-band uint8 Cloud-Optimized GeoTIFF with GDAL's COG driver.

The array is written to an in-memory GeoTIFF (``/vsimem``), then copied by GDAL's COG driver:
internal tiles of ``blocksize_px``, DEFLATE/ZSTD/LZW with the horizontal predictor, overviews
until the image fits one tile, resampled by ``mode`` (class maps) or ``average`` (probability,
confidence). The band's nodata (255) is declared before the overviews are built, so GDAL leaves
nodata pixels out of both the mode and the average (nodata never bleeds into the overviews).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.io import MemoryFile

INPUT_KEY_TAG = "NYCEO_INPUT_KEY"
PROVENANCE_TAG = "NYCEO_PROVENANCE"


@dataclass(frozen=True)
class CogBand:
    """What the single band of a COG means."""

    description: str
    resampling: Literal["mode", "average"]
    nodata: int = 255
    colormap: dict[int, tuple[int, int, int, int]] | None = None
    scale: float = 1.0
    offset: float = 0.0
    band_tags: dict[str, str] = field(default_factory=dict)


def hex_to_rgba(color: str) -> tuple[int, int, int, int]:
    """'#1f78b4' -> (31, 120, 180, 255)."""
    h = color.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour '{color}' is not #RRGGBB; fix infer.adapters.<name>.colors")
    return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)


def class_colormap(colors: list[str], nodata: int = 255) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table: one entry per class value, transparent nodata."""
    cmap = {i: hex_to_rgba(c) for i, c in enumerate(colors)}
    cmap[nodata] = (0, 0, 0, 0)
    return cmap


def cog_options(blocksize_px: int, compression: str, resampling: str) -> dict[str, Any]:
    """Creation options of GDAL's COG driver used for every output (and by the benchmark)."""
    opts: dict[str, Any] = {"BLOCKSIZE": blocksize_px, "COMPRESS": compression,
                            "OVERVIEW_RESAMPLING": resampling.upper(), "BIGTIFF": "IF_SAFER"}
    if compression in ("DEFLATE", "ZSTD", "LZW"):
        opts["PREDICTOR"] = "YES"
    return opts


def write_cog(data: np.ndarray, transform: Affine, crs: CRS | str, dest: str | Path, band: CogBand,
              *, blocksize_px: int, compression: str, tags: dict[str, str] | None = None) -> Path:
    """Write ``data`` (uint8, (y, x)) as a COG at the local path ``dest`` (not atomic: stage it)."""
    if data.ndim != 2 or data.dtype != np.uint8:
        raise ValueError(f"COG {dest}: expected a uint8 (y, x) array, got {data.dtype} {data.shape}")
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint8",
                   crs=crs, transform=transform, nodata=band.nodata)
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(data, 1)
            ds.set_band_description(1, band.description)
            if band.colormap is not None:
                ds.write_colormap(1, band.colormap)
            ds.scales, ds.offsets = (band.scale,), (band.offset,)
            ds.update_tags(**(tags or {}))
            if band.band_tags:
                ds.update_tags(1, **band.band_tags)
        with mem.open() as src:
            rasterio.shutil.copy(src, str(dest), driver="COG",
                                 **cog_options(blocksize_px, compression, band.resampling))
    return Path(dest)


def category_sidecar_xml(classes: list[str]) -> str:
    """GDAL PAM ``.aux.xml`` holding category names (GeoTIFF has no in-file place for them)."""
    cats = "".join(f"<Category>{escape(c)}</Category>" for c in classes)
    return (f'<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>{cats}</CategoryNames>\n'
            "  </PAMRasterBand>\n</PAMDataset>\n")


def _decodes(ds: Any) -> bool:
    """Every band decodes at full resolution and at every overview level (a truncated or overwritten
    file keeps its header, and so its key tag, but fails here)."""
    try:
        ds.read()
        for level in ds.overviews(1):
            ds.read(out_shape=(ds.count, max(1, ds.height // level), max(1, ds.width // level)))
    except rasterio.errors.RasterioIOError:
        return False
    return True


def read_input_key(path: str, storage_options: dict[str, Any] | None = None, verify: bool = False) -> str | None:
    """The input key stored in a published COG, or None when it is absent or unreadable.

    ``verify`` (local files) also decodes every tile: a damaged file reads as None, so it is rebuilt.
    Remote files are checked by their header only (a full read would download them)."""
    try:
        if "://" in path and not path.startswith("file://"):
            import fsspec

            fs, fpath = fsspec.core.url_to_fs(path, **(storage_options or {}))
            if not fs.exists(fpath):
                return None
            # Range reads through fsspec: only the header is fetched, not the whole file.
            with rasterio.open(fpath, opener=fs) as ds:
                return ds.tags().get(INPUT_KEY_TAG)
        if not Path(path).is_file():
            return None
        with rasterio.open(path) as ds:
            key = ds.tags().get(INPUT_KEY_TAG)
            return key if not verify or (key and _decodes(ds)) else None
    except rasterio.errors.RasterioIOError:
        return None


def provenance_tags(input_key: str, provenance: dict[str, Any]) -> dict[str, str]:
    return {INPUT_KEY_TAG: input_key, PROVENANCE_TAG: json.dumps(provenance, sort_keys=True, default=str)}
