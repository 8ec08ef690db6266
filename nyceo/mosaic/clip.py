"""Areas (boroughs and the city) and their pixel masks on the prediction grid.

A pixel belongs to an area when its **centre** lies inside the area's polygon
(``rasterio.features.rasterize`` with ``all_touched=False``). Centre sampling gives every pixel
to at most one borough, so the five borough COGs tile the city COG without overlap and the
city mask is exactly the union of the borough masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely.geometry.base import BaseGeometry

from nyceo.boundaries import load_boroughs
from nyceo.config import PipelineConfig
from nyceo.grid import select_boroughs
from nyceo.mosaic.layout import CITY_AREA
from nyceo.paths import area_slug


@dataclass(frozen=True)
class Area:
    """A published area: slug (file name), display name and polygon in the grid CRS."""

    slug: str
    name: str
    geometry: BaseGeometry


def configured_areas(config: PipelineConfig) -> dict[str, Area]:
    """The configured boroughs (grid.boroughs) by slug, plus the city ('nyc') as their union."""
    sel = select_boroughs(load_boroughs(config.grid.crs), config.grid.boroughs)
    areas = {area_slug(n): Area(area_slug(n), str(n), g) for n, g in zip(sel["BoroName"], sel.geometry)}
    city = shapely.union_all([a.geometry for a in areas.values()])
    areas[CITY_AREA] = Area(CITY_AREA, "New York City", city)
    return areas


def get_area(config: PipelineConfig, slug: str) -> Area:
    areas = configured_areas(config)
    if slug not in areas:
        raise ValueError(f"area '{slug}' is not configured; use one of {sorted(areas)} (grid.boroughs + 'nyc')")
    return areas[slug]


def area_window(geometry: BaseGeometry, transform: Affine, height_px: int, width_px: int) -> Window:
    """Pixel window of the polygon's bbox on a raster, cut to the raster's extent."""
    minx, miny, maxx, maxy = geometry.bounds
    inv = ~transform
    c0, r0 = inv @ (minx, maxy)
    c1, r1 = inv @ (maxx, miny)
    col0, row0 = max(0, math.floor(c0)), max(0, math.floor(r0))
    col1, row1 = min(width_px, math.ceil(c1)), min(height_px, math.ceil(r1))
    if col1 <= col0 or row1 <= row0:
        raise ValueError(
            f"the area (bbox {tuple(round(b) for b in geometry.bounds)}) lies outside the prediction "
            f"grid ({width_px} x {height_px} px from {transform.c:.0f}, {transform.f:.0f}); grid that "
            "borough (grid.boroughs) and re-run acquire/infer"
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


def area_mask(geometry: BaseGeometry, window_transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (y, x) mask: True where the pixel centre is inside the polygon."""
    return rasterize([(geometry, 1)], out_shape=shape, transform=window_transform,
                     fill=0, all_touched=False, dtype="uint8").astype(bool)
