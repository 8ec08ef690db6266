"""Seeded synthetic scenes for tests and benchmarks: small GeoTIFFs shaped like Planetary Computer's.

Values are deterministic functions of ground coordinates, so a test knows what any pixel of the
stack must hold: S2 band ``b`` at a 10 m pixel centre (x, y) is :func:`s2_value` (+1000 DN when the
scene's processing baseline is >= 04.00); SCL is 4 (vegetation, clear) except a cloud (9) band
over the top ``cloud`` fraction of each scene; S1 is linear power :func:`s1_power`; the DEM (in
EPSG:4326, like cop-dem-glo-30) is :func:`dem_height`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pystac
import rasterio
from affine import Affine
from pyproj import Transformer

from catalogs.static import item_from_files

Bbox = tuple[float, float, float, float]
S2_RES_M = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
            "B8A": 20, "B09": 60, "B11": 20, "B12": 20, "SCL": 20}
DEM_RES_DEG = 1 / 3600


def s2_value(band_index: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Harmonized DN of band ``band_index`` at ground coordinates (metres, EPSG:32618)."""
    return (600 + 150 * band_index + 400 * np.sin(x / 700.0) + 300 * np.cos(y / 900.0)).astype(np.int32)


def s1_power(pol: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    base = 0.05 * (1.0 + 0.5 * np.sin(x / 500.0) * np.cos(y / 650.0))
    return (base if pol == "vv" else base / 5.0).astype(np.float32)


def dem_height(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (20.0 + 1000.0 * (lat - 40.7) + 300.0 * (lon + 74.0)).astype(np.float32)


def _centres(bounds: Bbox, res: float) -> tuple[np.ndarray, np.ndarray, Affine, tuple[int, int]]:
    minx, miny, maxx, maxy = bounds
    h, w = round((maxy - miny) / res), round((maxx - minx) / res)
    x = minx + res * (np.arange(w) + 0.5)
    y = maxy - res * (np.arange(h) + 0.5)
    return np.meshgrid(x, y)[0], np.meshgrid(x, y)[1], Affine(res, 0, minx, 0, -res, maxy), (h, w)


def write_tif(path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tiled = {"tiled": True, "blockxsize": 256, "blockysize": 256} if min(data.shape) >= 256 else {}
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata,
                       compress="deflate", **tiled) as dst:
        dst.write(data, 1)
    return path


@dataclass(frozen=True)
class S2Scene:
    date: dt.date
    cloud: float = 0.0          # fraction of the scene (top rows) covered by cloud in SCL
    baseline: str = "05.10"
    cloud_cover_pct: float | None = None  # eo:cloud_cover; default = cloud * 100


def s2_item(root: Path, tile: int, bounds: Bbox, scene: S2Scene) -> pystac.Item:
    """One Sentinel-2 L2A item over ``bounds`` (EPSG:32618) with 12 bands + SCL, uint16, nodata 0."""
    sid = f"S2B_MSIL2A_{scene.date:%Y%m%d}T154809_N{scene.baseline.replace('.', '')}_R054_T18TWL_t{tile}"
    offset = 1000 if float(scene.baseline) >= 4.0 else 0
    files = {}
    for b_idx, band in enumerate([*S2_RES_M]):
        x, y, tr, (h, w) = _centres(bounds, S2_RES_M[band])
        if band == "SCL":
            data = np.full((h, w), 4, dtype=np.uint8)
            data[: int(round(scene.cloud * h)), :] = 9
        else:
            data = (s2_value(b_idx, x, y) + offset).astype(np.uint16)
        files[band] = write_tif(root / "s2" / sid / f"{band}.tif", data, tr, "EPSG:32618",
                                None if band == "SCL" else 0)
    when = dt.datetime.combine(scene.date, dt.time(15, 48, 9), tzinfo=dt.timezone.utc)
    cc = scene.cloud * 100 if scene.cloud_cover_pct is None else scene.cloud_cover_pct
    props = {"eo:cloud_cover": cc, "s2:processing_baseline": scene.baseline, "platform": "sentinel-2b"}
    return item_from_files(sid, "sentinel-2-l2a", when, files, properties=props)


def s1_item(root: Path, tile: int, bounds: Bbox, date: dt.date) -> pystac.Item:
    """One Sentinel-1 RTC item (vv, vh linear power float32, nodata -32768)."""
    sid = f"S1A_IW_GRDH_1SDV_{date:%Y%m%d}T225412_t{tile}_rtc"
    x, y, tr, _ = _centres(bounds, 10.0)
    files = {p: write_tif(root / "s1" / sid / f"{p}.tif", s1_power(p, x, y), tr, "EPSG:32618", -32768.0)
             for p in ("vv", "vh")}
    when = dt.datetime.combine(date, dt.time(22, 54, 12), tzinfo=dt.timezone.utc)
    return item_from_files(sid, "sentinel-1-rtc", when, files, properties={"platform": "SENTINEL-1A"})


def dem_item(root: Path, tile: int, bounds: Bbox) -> pystac.Item:
    """One Copernicus-DEM-like item in EPSG:4326 (float32) covering ``bounds`` with a margin."""
    tr_ll = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    lon0, lat0, lon1, lat1 = tr_ll.transform_bounds(*bounds)
    pad = 20 * DEM_RES_DEG
    ll = (np.floor((lon0 - pad) * 3600) / 3600, np.floor((lat0 - pad) * 3600) / 3600,
          np.ceil((lon1 + pad) * 3600) / 3600, np.ceil((lat1 + pad) * 3600) / 3600)
    lon, lat, tr, _ = _centres(ll, DEM_RES_DEG)
    sid = f"Copernicus_DSM_COG_10_t{tile}_DEM"
    path = write_tif(root / "dem" / sid / "data.tif", dem_height(lon, lat), tr, "EPSG:4326", None)
    when = dt.datetime(2021, 4, 22, tzinfo=dt.timezone.utc)
    return item_from_files(sid, "cop-dem-glo-30", when, {"data": path})


def write_scenes(root: Path, tiles: list[Bbox], s2: list[S2Scene], s1_dates: list[dt.date]
                 ) -> list[pystac.Item]:
    """Every tile gets every S2 scene, every S1 date and one DEM item."""
    items: list[pystac.Item] = []
    for t, bounds in enumerate(tiles):
        items += [s2_item(root, t, bounds, sc) for sc in s2]
        items += [s1_item(root, t, bounds, d) for d in s1_dates]
        items.append(dem_item(root, t, bounds))
    return items
