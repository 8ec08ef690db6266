"""The fixed global chip lattice on the 10 m Sentinel grid (EPSG:32618).

A chip is the lattice cell (row, col): its top-left corner is
``(origin_x_m + col * chip_m, origin_y_m - row * chip_m)``; rows grow southward. The lattice does
not depend on the area being gridded, so a chip ID (``r{row:04d}_c{col:04d}``) names the same
ground in every run, month and year. Processing blocks and inference windows are derived from
the same lattice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine

from nyceo.config import GridConfig


@dataclass(frozen=True)
class Lattice:
    """Arithmetic of the chip lattice (no geometry library needed)."""

    origin_x_m: float
    origin_y_m: float
    chip_size_px: int
    resolution_m: float

    @classmethod
    def from_config(cls, grid: GridConfig) -> "Lattice":
        return cls(grid.origin_x_m, grid.origin_y_m, grid.chip_size_px, grid.resolution_m)

    @property
    def chip_m(self) -> float:
        return self.chip_size_px * self.resolution_m

    def chip_of_point(self, x_m: float, y_m: float) -> tuple[int, int]:
        """(row, col) of the chip holding a point; points on an edge belong to the chip right/below."""
        col = math.floor((x_m - self.origin_x_m) / self.chip_m)
        row = math.floor((self.origin_y_m - y_m) / self.chip_m)
        return row, col

    def chip_bounds(self, row: int, col: int) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) of a chip in metres."""
        minx = self.origin_x_m + col * self.chip_m
        maxy = self.origin_y_m - row * self.chip_m
        return (minx, maxy - self.chip_m, minx + self.chip_m, maxy)

    def chip_range(self, bounds: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Inclusive (row0, col0, row1, col1) of the chips intersecting a bbox's interior."""
        minx, miny, maxx, maxy = bounds
        eps = 1e-6
        row0, col0 = self.chip_of_point(minx, maxy - eps)
        row1, col1 = self.chip_of_point(maxx - eps, miny + eps)
        return row0, col0, row1, col1

    def transform(self, row0: int, col0: int) -> Affine:
        """Pixel geotransform of a raster whose top-left pixel is the top-left of chip (row0, col0)."""
        minx, _, _, maxy = self.chip_bounds(row0, col0)
        return Affine(self.resolution_m, 0.0, minx, 0.0, -self.resolution_m, maxy)


def chip_id(row: int, col: int) -> str:
    """Stable chip identifier on the global lattice."""
    return f"r{row:04d}_c{col:04d}"


def parse_chip_id(cid: str) -> tuple[int, int]:
    """Inverse of :func:`chip_id`."""
    try:
        r, c = cid.split("_")
        return int(r[1:]), int(c[1:])
    except (ValueError, IndexError):
        raise ValueError(f"'{cid}' is not a chip id; expected r<row>_c<col>, e.g. r0217_c0251") from None


def select_boroughs(boroughs: gpd.GeoDataFrame, wanted: list[str]) -> gpd.GeoDataFrame:
    """Rows of ``boroughs`` named (BoroName) or coded (BoroCode) in ``wanted``."""
    names = {str(n).lower() for n in boroughs["BoroName"]}
    codes = {str(c) for c in boroughs["BoroCode"]}
    unknown = [w for w in wanted if w.lower() not in names and str(w) not in codes]
    if unknown:
        raise ValueError(
            f"unknown borough(s) {unknown} in grid.boroughs; use names from "
            f"{sorted(boroughs['BoroName'])} or codes 1-5"
        )
    keep = boroughs["BoroName"].str.lower().isin([w.lower() for w in wanted]) | boroughs[
        "BoroCode"
    ].astype(str).isin([str(w) for w in wanted])
    return boroughs[keep]


def build_grid(grid: GridConfig, boroughs: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Chips of the lattice that intersect the selected boroughs.

    ``boroughs`` must be in ``grid.crs``. Returns a GeoDataFrame sorted by (row, col) with
    columns chip_id, row, col, boroughs (comma-separated names, sorted), land_fraction, geometry.
    """
    if boroughs.crs is None or boroughs.crs.to_string() != grid.crs:
        raise ValueError(f"boroughs are in {boroughs.crs}, the grid in {grid.crs}; reproject first")
    sel = select_boroughs(boroughs, grid.boroughs)
    lat = Lattice.from_config(grid)
    row0, col0, row1, col1 = lat.chip_range(tuple(sel.total_bounds))
    rows, cols = np.meshgrid(np.arange(row0, row1 + 1), np.arange(col0, col1 + 1), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    boxes = [shapely.box(*lat.chip_bounds(r, c)) for r, c in zip(rows, cols)]
    cand = gpd.GeoDataFrame({"row": rows, "col": cols}, geometry=boxes, crs=grid.crs)
    land = shapely.union_all(sel.geometry.values)
    hits = gpd.sjoin(cand, sel[["BoroName", "geometry"]], how="inner", predicate="intersects")
    # 'intersects' also catches chips that only touch a polygon along an edge: keep positive area.
    inter_area = shapely.area(shapely.intersection(hits.geometry.values, sel.geometry.loc[hits["index_right"]].values))
    hits = hits[inter_area > 0]
    names = hits.groupby(level=0)["BoroName"].agg(lambda s: ",".join(sorted(set(s))))
    chips = cand.loc[names.index].copy()
    chips["boroughs"] = names
    chips["land_fraction"] = shapely.area(shapely.intersection(chips.geometry.values, land)) / lat.chip_m**2
    kept = chips[chips["land_fraction"] >= grid.min_land_fraction]
    if kept.empty:
        best = f"; the largest land fraction of a chip there is {chips['land_fraction'].max():.3f}" if len(chips) else ""
        raise ValueError(
            f"the area is empty: no chip of the lattice over grid.boroughs {list(grid.boroughs)} has a land "
            f"fraction >= grid.min_land_fraction {grid.min_land_fraction}{best}. Lower grid.min_land_fraction "
            "(0.0 keeps every chip that touches a borough) or add boroughs."
        )
    chips = kept.copy()
    chips["chip_id"] = [chip_id(r, c) for r, c in zip(chips["row"], chips["col"])]
    chips = chips.sort_values(["row", "col"]).reset_index(drop=True)
    return chips[["chip_id", "row", "col", "boroughs", "land_fraction", "geometry"]]


def counts_per_borough(chips: gpd.GeoDataFrame) -> dict[str, int]:
    """Chips touching each borough (a chip on a borough line counts for both)."""
    out: dict[str, int] = {}
    for names in chips["boroughs"]:
        for n in names.split(","):
            out[n] = out.get(n, 0) + 1
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class AreaGrid:
    """The raster that covers a set of chips: the bbox of the chips, snapped to the lattice."""

    row0: int
    col0: int
    n_rows: int
    n_cols: int
    lattice: Lattice

    @classmethod
    def from_chips(cls, chips: gpd.GeoDataFrame, lattice: Lattice) -> "AreaGrid":
        r0, c0 = int(chips["row"].min()), int(chips["col"].min())
        return cls(r0, c0, int(chips["row"].max()) - r0 + 1, int(chips["col"].max()) - c0 + 1, lattice)

    @property
    def height_px(self) -> int:
        return self.n_rows * self.lattice.chip_size_px

    @property
    def width_px(self) -> int:
        return self.n_cols * self.lattice.chip_size_px

    @property
    def transform(self) -> Affine:
        return self.lattice.transform(self.row0, self.col0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        minx, _, _, maxy = self.lattice.chip_bounds(self.row0, self.col0)
        res = self.lattice.resolution_m
        return (minx, maxy - self.height_px * res, minx + self.width_px * res, maxy)

    def chip_slices(self, row: int, col: int) -> tuple[slice, slice]:
        """(y, x) pixel slices of chip (row, col) inside this raster."""
        size = self.lattice.chip_size_px
        y0, x0 = (row - self.row0) * size, (col - self.col0) * size
        return slice(y0, y0 + size), slice(x0, x0 + size)

    def coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (y descending, x ascending) in metres."""
        minx, _, _, maxy = self.bounds
        res = self.lattice.resolution_m
        x = minx + res * (np.arange(self.width_px) + 0.5)
        y = maxy - res * (np.arange(self.height_px) + 0.5)
        return y, x


@dataclass(frozen=True)
class Block:
    """A processing block: up to ``size`` x ``size`` chips, aligned to the global lattice."""

    brow: int
    bcol: int
    chip_ids: tuple[str, ...]

    @property
    def block_id(self) -> str:
        return f"b{self.brow:03d}_{self.bcol:03d}"


def blocks_for_chips(chips: gpd.GeoDataFrame, block_size_chips: int) -> list[Block]:
    """Group chips into lattice-aligned blocks (block row = floor(chip row / size)), sorted by id."""
    brow = np.floor_divide(chips["row"].to_numpy(), block_size_chips)
    bcol = np.floor_divide(chips["col"].to_numpy(), block_size_chips)
    groups: dict[tuple[int, int], list[str]] = {}
    for br, bc, cid in zip(brow, bcol, chips["chip_id"]):
        groups.setdefault((int(br), int(bc)), []).append(str(cid))
    return [Block(br, bc, tuple(sorted(ids))) for (br, bc), ids in sorted(groups.items())]
