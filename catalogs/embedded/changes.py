"""Planted, documented changes of the embedded city between consecutive demo months.

The embedded city is static (``landscape.build_landscape``); these few rectangles change its
surface from a given month on, so the change stage has real change to find in the demo while the
rest of the city stays the same ground (where only scene noise differs). Each change applies to
land pixels only (never to water), from the first day of ``start`` until the day before ``end``
(None = for good). Scenes of the affected months are rendered from the changed surface; the truth
rasters (``nyceo-embedded-truth``) stay the pre-change city.

===================  ===========  ==========================  =========  =======  =====================
name                 kind         centre (EPSG:32618, m)      size (m)   start    end
===================  ===========  ==========================  =========  =======  =====================
freshkills-houses    buildings    568 560, 4 491 900 (SI)     400 x 300  2024-07  -  (persists)
pelham-clearing      cleared      600 290, 4 524 450 (Bronx)  500 x 400  2024-07  -  (persists)
forest-park-houses   buildings    596 730, 4 506 420 (Qns)    300 x 300  2024-08  -  (persists)
marine-park-yard     cleared      591 380, 4 495 300 (Bklyn)  300 x 200  2024-07  2024-08 (reverts)
===================  ===========  ==========================  =========  =======  =====================

``buildings``: land cover becomes developed, with 30 m x 30 m buildings on a 40 m pitch (roof
surface); ``cleared``: land cover becomes other (bare ground), buildings removed. So 2024-06 ->
2024-07 shows a new building cluster, a cleared lot and a temporary yard; 2024-07 -> 2024-08 a
second building cluster, and the yard's return (a provisional change that reverts: dropped by the
persistence rule), while July's first cluster and clearing persist (confirmed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from catalogs.embedded.landscape import DEVELOPED, OTHER, TEXTURE_LEVELS, WATER, Landscape, subsample

PLANTED_VERSION = 1
ROOF = 5  # surface code of building roofs (landscape.build_landscape)


@dataclass(frozen=True)
class PlantedChange:
    name: str
    kind: Literal["buildings", "cleared"]
    centre_m: tuple[float, float]  # (x, y) EPSG:32618
    size_m: tuple[float, float]  # (width, height)
    start: str  # YYYY-MM, first month with the change
    end: str | None = None  # YYYY-MM, first month without it again (None: persists)


PLANTED: tuple[PlantedChange, ...] = (
    PlantedChange("freshkills-houses", "buildings", (568_560.0, 4_491_900.0), (400.0, 300.0), "2024-07"),
    PlantedChange("pelham-clearing", "cleared", (600_290.0, 4_524_450.0), (500.0, 400.0), "2024-07"),
    PlantedChange("forest-park-houses", "buildings", (596_730.0, 4_506_420.0), (300.0, 300.0), "2024-08"),
    PlantedChange("marine-park-yard", "cleared", (591_380.0, 4_495_300.0), (300.0, 200.0), "2024-07", "2024-08"),
)


def active(year: int, month: int) -> list[PlantedChange]:
    """The planted changes present in ``year``-``month``."""
    ym = f"{year:04d}-{month:02d}"
    return [c for c in PLANTED if c.start <= ym and (c.end is None or ym < c.end)]


def fingerprint(year: int, month: int) -> dict:
    """Extra fingerprint of a month's scenes ({} when nothing is planted, so other months keep theirs)."""
    names = [c.name for c in active(year, month)]
    return {"planted": names, "planted_version": PLANTED_VERSION} if names else {}


def _window(land: Landscape, change: PlantedChange) -> tuple[slice, slice] | None:
    inv = ~land.grid.transform(10.0)
    (cx, cy), (w, h) = change.centre_m, change.size_m
    c0, r0 = inv * (cx - w / 2, cy + h / 2)
    c1, r1 = inv * (cx + w / 2, cy - h / 2)
    hh, ww = land.grid.shape_10m
    r0, r1, c0, c1 = max(0, round(r0)), min(hh, round(r1)), max(0, round(c0)), min(ww, round(c1))
    return (slice(r0, r1), slice(c0, c1)) if r1 > r0 and c1 > c0 else None


def apply(land: Landscape, year: int, month: int) -> Landscape:
    """``land`` with the changes active in that month (the same object when none is)."""
    changes = active(year, month)
    if not changes:
        return land
    lc, bld = land.landcover.copy(), land.building.copy()
    for change in changes:
        win = _window(land, change)
        if win is None:  # outside this grid (a bbox variant of the city)
            continue
        ok = lc[win] != WATER
        if change.kind == "buildings":
            rows, cols = np.mgrid[win[0], win[1]]
            roofs = ((rows % 4) < 3) & ((cols % 4) < 3)
            lc[win] = np.where(ok, DEVELOPED, lc[win])
            bld[win] = np.where(ok, roofs, bld[win])
        else:
            lc[win] = np.where(ok, OTHER, lc[win])
            bld[win] = np.where(ok, False, bld[win])
    texture = land.code(10.0) % TEXTURE_LEVELS
    code10 = np.where(bld, np.uint8(ROOF), lc).astype(np.uint8) * np.uint8(TEXTURE_LEVELS) + texture
    codes = {10: code10, 20: np.ascontiguousarray(subsample(code10, 2)), 60: np.ascontiguousarray(subsample(code10, 6))}
    return replace(land, landcover=lc, building=bld, codes=codes)
