"""Reading STAC assets onto a block of the chip grid with stackstac.

Every read lands directly on the block's exact geotransform (EPSG, resolution, bounds on the
lattice): no intermediate rasters, no rescaling (``rescale=False``: raw digital numbers), a fill
value of the array's own dtype. One date at a time is computed (tiles of one date are mosaicked),
so memory stays at one block of one date per read whatever the area.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pystac
import stackstac
from rasterio.enums import Resampling

from nyceo.acquire.errors import AssetReadError

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
                return AssetReadError(
                    f"scene '{item.id}' asset '{key}' could not be read from {asset.href}: {exc}. "
                    "The file is missing, truncated or not a GeoTIFF: re-fetch it (for signed URLs "
                    "re-run: assets are signed per block) or remove the scene from the catalog."
                )
    ids = ", ".join(i.id for i in items)
    return AssetReadError(
        f"reading assets {list(assets)} of scene(s) {ids} failed: {exc}. Check that every asset "
        "href is readable (gdalinfo HREF) and re-fetch or remove the broken scene."
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


def read_date(
    items: Sequence[pystac.Item],
    assets: Sequence[str],
    spec: GridSpec,
    *,
    resampling: Resampling,
    dtype: np.dtype,
    fill_value: int | float,
    threads: int = 2,
) -> np.ndarray:
    """Read ``assets`` of the items of one date onto ``spec``; mosaic them. Returns (band, y, x)."""
    check_assets(items, assets)
    dtype = np.dtype(dtype)
    fill = dtype.type(fill_value)
    try:
        arr = stackstac.stack(
            [stac_dict(i) for i in items], assets=list(assets), epsg=spec.epsg,
            resolution=spec.resolution_m, bounds=spec.bounds, snap_bounds=False,
            resampling=resampling, dtype=dtype, fill_value=fill, rescale=False,
            chunksize=max(spec.shape), sortby_date=False, properties=False, band_coords=False,
            xy_coords="center",
        )
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
