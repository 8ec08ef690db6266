"""Builds the embedded city's units: one month of Sentinel-2, one month of Sentinel-1, the static
part (DEM tiles, truth rasters). Each ``build_*`` writes COGs into a folder and returns the items."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pystac

from catalogs.embedded import changes as planted
from catalogs.embedded import dem as dem_mod
from catalogs.embedded.landscape import CRS, CityGrid, Landscape, build_landscape
from catalogs.embedded.sentinel1 import NODATA as S1_NODATA, S1Acquisition, render_s1, s1_acquisitions
from catalogs.embedded.sentinel2 import S2Acquisition, cloud_cover_pct, render_s2, s2_acquisitions, scene_masks
from catalogs.embedded.writer import utm_footprint_lonlat, write_cog
from catalogs.static import item_from_files

S2_COLLECTION, S1_COLLECTION, DEM_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"
TRUTH_COLLECTION = "nyceo-embedded-truth"
TRUTH_DATETIME = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
EPSG = int(CRS.split(":")[1])
WRITE_THREADS = 2   # COGs are written (GDAL releases the GIL) while the next band is rendered


@dataclass(frozen=True)
class EmbeddedOptions:
    """Generator options. Months are "YYYY-MM" strings.

    ``all_cloud_months``: every Sentinel-2 scene of the month is cloud (SCL 8/9, eo:cloud_cover
    100). ``sparse_radar_months``: the month holds a single Sentinel-1 date.
    """

    all_cloud_months: tuple[str, ...] = field(default_factory=tuple)
    sparse_radar_months: tuple[str, ...] = field(default_factory=tuple)


def _grid_corners(grid: CityGrid) -> list[tuple[float, float]]:
    return [(grid.minx_m, grid.miny_m), (grid.maxx_m, grid.miny_m),
            (grid.maxx_m, grid.maxy_m), (grid.minx_m, grid.maxy_m)]


def _s2_footprint(grid: CityGrid, edge_cols_10m: tuple[float, float] | None) -> dict:
    if edge_cols_10m is None:
        return utm_footprint_lonlat(_grid_corners(grid), CRS)
    top, bottom = (grid.minx_m + 10 * max(c, 0.0) for c in edge_cols_10m)
    return utm_footprint_lonlat([(bottom, grid.miny_m), (grid.maxx_m, grid.miny_m),
                                 (grid.maxx_m, grid.maxy_m), (top, grid.maxy_m)], CRS)


def _resolve(futures: dict[str, "Future[Path]"]) -> dict[str, Path]:
    return {key: fut.result() for key, fut in futures.items()}


def build_s2_month(out: Path, grid: CityGrid, seed: int, year: int, month: int, all_cloud: bool,
                   until: dt.datetime | None = None) -> list[pystac.Item]:
    land = planted.apply(build_landscape(grid, seed), year, month)  # changes.py
    items = []
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        for idx, acq in enumerate(s2_acquisitions(year, month, until)):
            items.append(_s2_scene(pool, out, grid, land, seed, (year, month, idx), acq, all_cloud))
    return items


def _s2_scene(pool: ThreadPoolExecutor, out: Path, grid: CityGrid, land: Landscape, seed: int,
              ym_idx: tuple[int, int, int], acq: S2Acquisition, all_cloud: bool) -> pystac.Item:
    """Render one scene's bands and queue their COG writes; the item once every file is written."""
    rng = np.random.default_rng([seed, 2, *ym_idx])
    masks = scene_masks(grid, acq, rng, all_cloud)
    folder = out / acq.item_id
    futures, fields, cover = {}, {}, 0.0
    for key, arr, res in render_s2(land, acq, masks, rng):
        futures[key] = pool.submit(write_cog, folder / f"{key}.tif", arr, grid.transform(res), CRS, 0, False)
        band = {"nodata": 0, "data_type": "uint16", "spatial_resolution": res}
        if key == "SCL":
            cover = cloud_cover_pct(arr)
            nodata_pct = round(100.0 * float((arr == 0).mean()), 4)
        else:
            band.update(scale=0.0001, offset=-0.1 if acq.offset_dn else 0.0)
        fields[key] = {"gsd": res, "raster:bands": [band], "eo:bands": [{"name": key}]}
    props = {
        "platform": acq.platform, "constellation": "Sentinel 2", "instruments": ["msi"],
        "eo:cloud_cover": cover, "s2:nodata_pixel_percentage": nodata_pct,
        "s2:processing_baseline": acq.baseline, "s2:mgrs_tile": "18TWL",
        "s2:product_type": "S2MSI2A", "sat:relative_orbit": acq.relative_orbit,
        "sat:orbit_state": "descending", "proj:epsg": EPSG,
    }
    return item_from_files(acq.item_id, S2_COLLECTION, acq.datetime, _resolve(futures), props, fields,
                           _s2_footprint(grid, masks.edge_cols_10m))


def build_s1_month(out: Path, grid: CityGrid, seed: int, year: int, month: int, sparse: bool,
                   until: dt.datetime | None = None) -> list[pystac.Item]:
    land = planted.apply(build_landscape(grid, seed), year, month)  # changes.py
    items = []
    with ThreadPoolExecutor(WRITE_THREADS) as pool:
        for idx, acq in enumerate(s1_acquisitions(year, month, sparse, until)):
            items.append(_s1_scene(pool, out, grid, land, np.random.default_rng([seed, 3, year, month, idx]), acq))
    return items


def _s1_scene(pool: ThreadPoolExecutor, out: Path, grid: CityGrid, land: Landscape, rng: np.random.Generator,
              acq: S1Acquisition) -> pystac.Item:
    """Render one radar scene and queue its COG writes; the item once both files are written."""
    futures, fields = {}, {}
    for key, arr in render_s1(land, acq, rng).items():
        futures[key] = pool.submit(write_cog, out / acq.item_id / f"{key}.tif", arr, grid.transform(10), CRS,
                                   S1_NODATA, False)
        fields[key] = {"gsd": 10, "raster:bands": [
            {"nodata": S1_NODATA, "data_type": "float32", "spatial_resolution": 10, "unit": "linear power"}]}
    props = {
        "platform": acq.platform.replace("S1", "SENTINEL-1"), "constellation": "Sentinel-1",
        "sar:instrument_mode": "IW", "sar:polarizations": ["VV", "VH"], "sar:frequency_band": "C",
        "sar:product_type": "GRD", "sat:orbit_state": "ascending", "sat:relative_orbit": 33,
        "sat:absolute_orbit": acq.absolute_orbit, "s1:resolution": "high", "proj:epsg": EPSG,
    }
    return item_from_files(acq.item_id, S1_COLLECTION, acq.datetime, _resolve(futures), props, fields,
                           utm_footprint_lonlat(_grid_corners(grid), CRS))


def build_static(out: Path, grid: CityGrid, seed: int) -> list[pystac.Item]:
    """DEM tiles (EPSG:4326, 1 arc-second) and the truth rasters (10 m grid)."""
    items = []
    for tile in dem_mod.dem_tiles(grid):
        path = write_cog(out / tile.item_id / "data.tif", dem_mod.render_dem(tile, seed), tile.transform,
                         "EPSG:4326", None)
        fields = {"data": {"gsd": 30, "raster:bands": [
            {"data_type": "float32", "spatial_resolution": 30, "unit": "metre"}]}}
        props = {"gsd": 30, "platform": "TanDEM-X", "proj:epsg": 4326}
        items.append(item_from_files(tile.item_id, DEM_COLLECTION, dem_mod.DEM_DATETIME, {"data": path}, props, fields))
    land = build_landscape(grid, seed)
    truth_id = f"embedded-truth-s{seed}"
    assets = {
        "landcover": write_cog(out / truth_id / "landcover.tif", land.landcover, grid.transform(10), CRS, None),
        "buildings": write_cog(out / truth_id / "buildings.tif", land.building.astype(np.uint8),
                               grid.transform(10), CRS, None),
    }
    props = {"nyceo:landcover_classes": ["water", "developed", "forest", "herbaceous", "other"],
             "nyceo:buildings_classes": ["background", "building"], "proj:epsg": EPSG}
    items.append(item_from_files(truth_id, TRUTH_COLLECTION, TRUTH_DATETIME, assets, props))
    return items
