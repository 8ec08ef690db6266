"""Synthetic Copernicus DEM GLO-30 of the embedded city, shaped like Planetary Computer's.

Written in EPSG:4326 at 1 arc-second (≈ 30 m), float32 metres, asset ``data``, split into the real
1° x 1° tile ids (the city straddles 74° W, so two items: ``…_N40_00_W075_00_DEM`` and
``…_N40_00_W074_00_DEM``), each cut to the city's extent. The acquisition stage has to mosaic and
reproject it onto the UTM grid, as with the real collection. Water is 0 m; land rises in smooth
hills up to ≈ 120 m (Staten Island and the Bronx are not flat).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.features import rasterize

from catalogs.embedded.landscape import CityGrid, smooth_noise
from nyceo.boundaries import load_boroughs

ARCSEC = 1.0 / 3600.0
DEM_DATETIME = dt.datetime(2021, 4, 22, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class DemTile:
    item_id: str
    transform: Affine
    shape: tuple[int, int]

    @property
    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        x0, y1 = self.transform.c, self.transform.f
        return x0, y1 - self.shape[0] * ARCSEC, x0 + self.shape[1] * ARCSEC, y1


def _tile_id(lat_floor: int, lon_floor: int) -> str:
    ns = f"N{lat_floor:02d}" if lat_floor >= 0 else f"S{-lat_floor:02d}"
    ew = f"W{-lon_floor:03d}" if lon_floor < 0 else f"E{lon_floor:03d}"
    return f"Copernicus_DSM_COG_10_{ns}_00_{ew}_00_DEM"


def dem_tiles(grid: CityGrid, margin_deg: float = 0.01) -> list[DemTile]:
    """The 1° tiles the grid touches, each cut to the grid's extent (whole arc-seconds)."""
    lon0, lat0, lon1, lat1 = grid.bbox_lonlat
    lon0, lat0 = np.floor((lon0 - margin_deg) * 3600) / 3600, np.floor((lat0 - margin_deg) * 3600) / 3600
    lon1, lat1 = np.ceil((lon1 + margin_deg) * 3600) / 3600, np.ceil((lat1 + margin_deg) * 3600) / 3600
    tiles = []
    for lat_f in range(int(np.floor(lat0)), int(np.floor(lat1 - 1e-9)) + 1):
        for lon_f in range(int(np.floor(lon0)), int(np.floor(lon1 - 1e-9)) + 1):
            x0, x1 = max(lon0, lon_f), min(lon1, lon_f + 1)
            y0, y1 = max(lat0, lat_f), min(lat1, lat_f + 1)
            w, h = int(round((x1 - x0) * 3600)), int(round((y1 - y0) * 3600))
            if w > 0 and h > 0:
                tiles.append(DemTile(_tile_id(lat_f, lon_f), Affine(ARCSEC, 0, x0, 0, -ARCSEC, y1), (h, w)))
    return tiles


def render_dem(tile: DemTile, seed: int) -> np.ndarray:
    """Elevation (float32 metres) of one tile; continuous across tiles (noise on a global grid)."""
    boroughs = load_boroughs("EPSG:4326")
    land = rasterize([(g, 1) for g in boroughs.geometry], out_shape=tile.shape,
                     transform=tile.transform, fill=0, dtype="uint8").astype(bool)
    # global noise lattice: one value per 0.02° cell, indexed by absolute cell so tiles match
    cell = 0.02
    lon = tile.transform.c + (np.arange(tile.shape[1]) + 0.5) * ARCSEC
    lat = tile.transform.f - (np.arange(tile.shape[0]) + 0.5) * ARCSEC
    gx, gy = lon / cell, lat / cell
    ix, iy = np.floor(gx).astype(int), np.floor(gy).astype(int)
    fx, fy = (gx - ix).astype(np.float32), (gy - iy).astype(np.float32)

    def node(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        h = (yy[:, None].astype(np.int64) * 73856093) ^ (xx[None, :].astype(np.int64) * 19349663) ^ seed
        return (np.random.default_rng(0).random(1 << 16, dtype=np.float32))[h % (1 << 16)]

    v00, v01, v10, v11 = node(iy, ix), node(iy, ix + 1), node(iy + 1, ix), node(iy + 1, ix + 1)
    hills = (v00 * (1 - fx) + v01 * fx) * (1 - fy)[:, None] + (v10 * (1 - fx) + v11 * fx) * fy[:, None]
    rng = np.random.default_rng([seed, 7])
    detail = smooth_noise(rng, tile.shape, 30.0, 240.0)
    elev = np.where(land, 2.0 + 110.0 * hills ** 2 + 1.5 * detail, 0.0)
    return np.maximum(elev, 0.0).astype(np.float32)
