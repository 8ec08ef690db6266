"""Reading STAC assets onto a block of the chip grid.

Every read lands directly on the block's exact geotransform (EPSG, resolution, bounds on the
lattice): no intermediate rasters, no rescaling (raw digital numbers), a fill value of the array's
own dtype. One date at a time is read (tiles of one date are mosaicked, the last item on top, as
``stackstac.mosaic``), so memory stays at one block of one date per read whatever the area.

Two paths give the same pixels: assets already on the grid's CRS with nesting pixels (Sentinel-2,
Sentinel-1 RTC in the UTM zone of the lattice) are read natively with rasterio windowed reads and
resampled in numpy (:mod:`nyceo.acquire.aligned`); everything else (another CRS such as the
EPSG:4326 DEM or a real chip in EPSG:32632, rotated or non-nesting grids) goes through stackstac
and GDAL's warper.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pystac
import rasterio
import stackstac
from rasterio.enums import Resampling

from nyceo.acquire.aligned import read_aligned
from nyceo.acquire.errors import AssetReadError

GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "GDAL_CACHEMAX": 256, "VSI_CACHE": True}

Bbox = tuple[float, float, float, float]


@dataclass(frozen=True)
class GridSpec:
    """The exact output raster of a read: EPSG code, pixel size and lattice-aligned bounds."""

    epsg: int
    resolution_m: float
    bounds: Bbox

    @property
    def shape(self) -> tuple[int, int]:
        minx, miny, maxx, maxy = self.bounds
        return round((maxy - miny) / self.resolution_m), round((maxx - minx) / self.resolution_m)

    def coarsened(self, resolution_m: float) -> "GridSpec":
        return GridSpec(self.epsg, resolution_m, self.bounds)


def _epsg_of(code: Any) -> int | None:
    if isinstance(code, str) and code.upper().startswith("EPSG:"):
        return int(code.split(":")[1])
    return None


def stac_dict(item: pystac.Item) -> dict[str, Any]:
    """The item as a dict stackstac understands (``proj:code`` also given as ``proj:epsg``)."""
    d = copy.deepcopy(item.to_dict(transform_hrefs=False))
    for holder in [d["properties"], *d["assets"].values()]:
        if "proj:epsg" not in holder and _epsg_of(holder.get("proj:code")) is not None:
            holder["proj:epsg"] = _epsg_of(holder["proj:code"])
    return d


def _asset_error(exc: BaseException, items: Sequence[pystac.Item], assets: Sequence[str]) -> AssetReadError:
    """Turn a reader error into one that names the scene, the asset and the file, and says what to do."""
    text = f"{exc!r} {exc.__cause__!r}"
    for item in items:
        for key in assets:
            asset = item.assets.get(key)
            if asset is not None and asset.href in text:
                return _named_error(exc, item, key)
    ids = ", ".join(i.id for i in items)
    return AssetReadError(
        f"reading assets {list(assets)} of scene(s) {ids} failed: {exc}. Check that every asset "
        "href is readable (gdalinfo HREF) and re-fetch or remove the broken scene."
    )


def _outside_error(items: Sequence[pystac.Item], assets: Sequence[str], spec: GridSpec) -> AssetReadError:
    """The catalog says these scenes cover the block, but their pixels, placed in their declared CRS, do not."""
    declared = sorted({str(i.properties.get("proj:epsg", i.properties.get("proj:code", "?"))) for i in items})
    hrefs = [i.assets[a].href for i in items for a in assets if a in i.assets][:2]
    return AssetReadError(
        f"scene(s) {', '.join(i.id for i in items)}: the pixels of assets {list(assets)} ({', '.join(hrefs)}), "
        f"placed with their proj:transform in their declared CRS EPSG:{'/'.join(declared)}, do not overlap "
        f"block bounds {tuple(round(b) for b in spec.bounds)} in EPSG:{spec.epsg}, although the item's footprint "
        "does: the scene's CRS metadata is probably wrong (e.g. UTM south EPSG:327xx coordinates labelled "
        "326xx). Fix proj:epsg of the item (or its files' CRS), or remove the scene from the catalog."
    )


def _named_error(exc: BaseException, item: pystac.Item, key: str) -> AssetReadError:
    return AssetReadError(
        f"scene '{item.id}' asset '{key}' could not be read from {item.assets[key].href}: {exc}. "
        "The file is missing, truncated or not a GeoTIFF: re-fetch it (for signed URLs "
        "re-run: assets are signed per block) or remove the scene from the catalog."
    )


def check_assets(items: Sequence[pystac.Item], assets: Sequence[str]) -> None:
    """Every item must carry every asset; name the first one that does not."""
    for item in items:
        missing = [a for a in assets if a not in item.assets]
        if missing:
            raise AssetReadError(
                f"scene '{item.id}' has no asset(s) {missing} (it has {sorted(item.assets)}); "
                "check the collection's asset names in the acquire/catalog configuration."
            )


def _read_one_aligned(item: pystac.Item, key: str, spec: GridSpec, resampling: Resampling,
                      dtype: np.dtype, fill: np.generic) -> np.ndarray | None:
    try:
        with rasterio.Env(**GDAL_ENV), rasterio.open(item.assets[key].href) as src:
            return read_aligned(src, spec, resampling, dtype, fill)
    except Exception as exc:  # noqa: BLE001 - re-raised with the scene and asset named
        raise _named_error(exc, item, key) from exc


def _mosaic_last_on_top(layers: list[np.ndarray], fill: np.generic) -> np.ndarray:
    out = layers[0]
    for layer in layers[1:]:
        ok = ~np.isnan(layer) if np.isnan(fill) else layer != fill
        out = np.where(ok, layer, out)
    return out


def read_date_aligned(items: Sequence[pystac.Item], assets: Sequence[str], spec: GridSpec, *,
                      resampling: Resampling, dtype: np.dtype, fill: np.generic, threads: int
                      ) -> np.ndarray | None:
    """The fast path of :func:`read_date`, or None when an asset is not on the grid's CRS/pixels."""
    jobs = [(i, a) for a in assets for i in items]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        layers = list(pool.map(lambda ia: _read_one_aligned(ia[0], ia[1], spec, resampling, dtype, fill),
                               jobs))
    if any(layer is None for layer in layers):
        return None
    n = len(items)
    out = np.empty((len(assets), *spec.shape), dtype=dtype)
    for k in range(len(assets)):
        out[k] = _mosaic_last_on_top(layers[k * n:(k + 1) * n], fill)
        layers[k * n:(k + 1) * n] = [None] * n   # free each band once placed
    return out


def read_date(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    spec: GridSpec,
    *,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value: int | float,
    threads: int = 2,
    aligned: bool = True,
) -> np.ndarray:
    """Read ``assets`` of the items of one date onto ``spec``; mosaic them. Returns (band, y, x).

    ``aligned=False`` forces the general stackstac path (tests compare the two)."""
    check_assets(items, assets)
    dtype = np.dtype(dtype)
    fill = dtype.type(fill_value)
    if aligned:
        try:
            out = read_date_aligned(items, assets, spec, resampling=resampling, dtype=dtype, fill=fill,
                                    threads=threads)
        except AssetReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - re-raised with the scenes and assets named
            raise _asset_error(exc, items, assets) from exc
        if out is not None:
            return out
    try:
        arr = stackstac.stack(
            [stac_dict(i) for i in items], assets=list(assets), epsg=spec.epsg,
            resolution=spec.resolution_m, bounds=spec.bounds, snap_bounds=False,
            resampling=resampling, dtype=dtype, fill_value=fill, rescale=False,
            chunksize=max(spec.shape), sortby_date=False, properties=False, band_coords=False,
            xy_coords="center",
        )
        if arr.shape[0] == 0:
            raise _outside_error(items, assets, spec)
        if arr.shape[-2:] != spec.shape:
            raise AssertionError(f"stackstac produced {arr.shape[-2:]} pixels, expected {spec.shape}")
        data = arr.data
        if len(items) > 1:
            data = stackstac.mosaic(arr, dim="time", nodata=fill).data
        else:
            data = data[0]
        out = data.compute(scheduler="threads", num_workers=threads)
    except AssetReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the scene and asset named
        raise _asset_error(exc, items, assets) from exc
    return np.asarray(out)
