"""Builds the embedded city's units: one month of Sentinel-2, one month of Sentinel-1, the static
part (DEM tiles, truth rasters). Each ``build_*`` writes COGs into a folder and returns the items."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pystac

from catalogs.embedded import dem as dem_mod
from catalogs.embedded.landscape import CRS, CityGrid, build_landscape
from catalogs.embedded.sentinel1 import NODATA as S1_NODATA, render_s1, s1_acquisitions
from catalogs.embedded.sentinel2 import cloud_cover_pct, render_s2, s2_acquisitions, scene_masks
from catalogs.embedded.writer import utm_footprint_lonlat, write_cog
from catalogs.static import item_from_files

S2_COLLECTION, S1_COLLECTION, DEM_COLLECTION = "sentinel-2-l2a", "sentinel-1-rtc", "cop-dem-glo-30"
TRUTH_COLLECTION = "nyceo-embedded-truth"
TRUTH_DATETIME = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
EPSG = int(CRS.split(":")[1])


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


def build_s2_month(out: Path, grid: CityGrid, seed: int, year: int, month: int, all_cloud: bool) -> list[pystac.Item]:
    land = build_landscape(grid, seed)
    items = []
    for idx, acq in enumerate(s2_acquisitions(year, month)):
        rng = np.random.default_rng([seed, 2, year, month, idx])
        masks = scene_masks(grid, acq, rng, all_cloud)
        folder = out / acq.item_id
        assets, fields, cover = {}, {}, 0.0
        for key, arr, res in render_s2(land, acq, masks, rng):
            assets[key] = write_cog(folder / f"{key}.tif", arr, grid.transform(res), CRS, 0)
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
        items.append(item_from_files(acq.item_id, S2_COLLECTION, acq.datetime, assets, props, fields,
                                     _s2_footprint(grid, masks.edge_cols_10m)))
    return items


def build_s1_month(out: Path, grid: CityGrid, seed: int, year: int, month: int, sparse: bool) -> list[pystac.Item]:
    land = build_landscape(grid, seed)
    items = []
    for idx, acq in enumerate(s1_acquisitions(year, month, sparse)):
        rng = np.random.default_rng([seed, 3, year, month, idx])
        assets, fields = {}, {}
        for key, arr in render_s1(land, acq, rng).items():
            assets[key] = write_cog(out / acq.item_id / f"{key}.tif", arr, grid.transform(10), CRS, S1_NODATA)
            fields[key] = {"gsd": 10, "raster:bands": [
                {"nodata": S1_NODATA, "data_type": "float32", "spatial_resolution": 10, "unit": "linear power"}]}
        props = {
            "platform": acq.platform.replace("S1", "SENTINEL-1"), "constellation": "Sentinel-1",
            "sar:instrument_mode": "IW", "sar:polarizations": ["VV", "VH"], "sar:frequency_band": "C",
            "sar:product_type": "GRD", "sat:orbit_state": "ascending", "sat:relative_orbit": 33,
            "sat:absolute_orbit": acq.absolute_orbit, "s1:resolution": "high", "proj:epsg": EPSG,
        }
        items.append(item_from_files(acq.item_id, S1_COLLECTION, acq.datetime, assets, props, fields,
                                     utm_footprint_lonlat(_grid_corners(grid), CRS)))
    return items


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
