"""exactextract's exact cell coverage for many polygons in one call, without its GeoJSON round trip.

exactextract's GeoDataFrame input goes through ``iterfeatures`` -> Python GeoJSON dicts ->
``json.dumps`` -> a C++ GeoJSON parser, and its pandas writer copies every feature's result through
a Python dict: for the 262 NTAs (long shoreline rings) that was most of a first month's zonal time.
Here the polygons go in as WKB bytes (shapely, vectorised) and the per-feature ``cell_id`` /
``coverage`` arrays are kept as they come; the caller stacks them once (:func:`coverage_entries`).
"""

from __future__ import annotations

import numpy as np
import shapely
from exactextract import exact_extract
from exactextract.feature import Feature, FeatureSource, JSONFeature
from exactextract.raster import NumPyRasterSource
from exactextract.writer import Writer

ZONE = "zone_index"


class _WkbFeature(Feature):
    """One input polygon: its position in the layer and its WKB."""

    def __init__(self, index: int, wkb: bytes):
        Feature.__init__(self)
        self._index, self._wkb = index, wkb

    def geometry(self) -> bytes:
        return self._wkb

    def set_geometry_format(self) -> str:
        return "wkb"

    def fields(self) -> list[str]:
        return [ZONE]

    def get(self, name: str) -> int:
        return self._index


class _WkbSource(FeatureSource):
    def __init__(self, wkbs: list[bytes], srs_wkt: str):
        super().__init__()
        self._wkbs, self._srs = wkbs, srs_wkt

    def count(self) -> int:
        return len(self._wkbs)

    def __iter__(self):
        for i, wkb in enumerate(self._wkbs):
            yield _WkbFeature(i, wkb)

    def srs_wkt(self) -> str:
        return self._srs


class _ArrayWriter(Writer):
    """Keeps each feature's (zone index, cell ids, coverage fractions) as numpy arrays."""

    def __init__(self):
        super().__init__()
        self.zones: list[int] = []
        self.cells: list[np.ndarray] = []
        self.fractions: list[np.ndarray] = []

    def add_operation(self, op) -> None:  # noqa: ANN001 - exactextract's Operation
        pass

    def add_column(self, col_name: str) -> None:
        pass

    def add_geometry(self) -> None:
        pass

    def write(self, feature) -> None:  # noqa: ANN001 - exactextract's C++ feature
        f = JSONFeature()
        feature.copy_to(f)
        props = f.feature["properties"]
        self.zones.append(int(props[ZONE]))
        self.cells.append(np.asarray(props["cell_id"]))
        self.fractions.append(np.asarray(props["coverage"]))

    def features(self) -> "_ArrayWriter":
        return self


def _extract(geoms: np.ndarray, transform, height_px: int, width_px: int, srs_wkt: str) -> tuple[_ArrayWriter, np.ndarray]:
    """exactextract's per-feature arrays and the zone order (already in order: the sort is a no-op)."""
    t = transform
    bounds = dict(xmin=t.c, ymin=t.f + height_px * t.e, xmax=t.c + width_px * t.a, ymax=t.f)
    # the values are never read by cell_id / coverage; a broadcast view costs no memory
    values = np.broadcast_to(np.zeros(1, dtype=np.uint8), (height_px, width_px))
    src = NumPyRasterSource(values, srs_wkt=srs_wkt, **bounds)
    writer = _ArrayWriter()
    exact_extract(src, _WkbSource(list(shapely.to_wkb(geoms)), srs_wkt), ["cell_id", "coverage"],
                  include_cols=[ZONE], output=writer)
    return writer, np.argsort(np.asarray(writer.zones, dtype=np.int64), kind="stable")


def coverage_entries(geoms: np.ndarray, transform, height_px: int, width_px: int,
                     srs_wkt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(entries per zone, flat pixel index, fraction) of every pixel each polygon covers, zone-major.

    ``geoms``: shapely polygons in the grid CRS; ``transform``: the grid's north-up affine. Pixel
    indices are int32 when the grid has fewer than 2**31 pixels; fractions float32 (all > 0)."""
    writer, order = _extract(geoms, transform, height_px, width_px, srs_wkt)
    index_dtype = np.int32 if height_px * width_px < 2**31 else np.int64
    cells = _concat([writer.cells[i] for i in order], index_dtype)
    fractions = _concat([writer.fractions[i] for i in order], np.float32)
    counts = np.array([len(writer.cells[i]) for i in order], dtype=np.int64)
    keep = fractions > 0
    if not keep.all():  # exactextract lists covered cells only; kept for safety
        zones = np.repeat(np.arange(len(counts)), counts)[keep]
        counts = np.bincount(zones, minlength=len(counts)).astype(np.int64)
        cells, fractions = cells[keep], fractions[keep]
    return counts, cells, fractions


def coverage_parts(geoms: np.ndarray, transform, height_px: int, width_px: int, srs_wkt: str) -> dict[str, np.ndarray]:
    """The same entries split per zone while they are collected (no pass over all entries afterwards):
    ``inner_counts`` / ``inner_cells`` (fraction exactly 1; pixel indices int32 when the grid has fewer
    than 2**31 pixels) and ``edge_counts`` /
    ``edge_cells`` / ``edge_fractions`` (0 < fraction < 1, float32), each zone-major."""
    writer, order = _extract(geoms, transform, height_px, width_px, srs_wkt)
    index_dtype = np.int32 if height_px * width_px < 2**31 else np.int64
    inner, edge, frac = [], [], []
    for i in order:
        cells, fractions = writer.cells[i], writer.fractions[i]
        full = fractions >= 1
        part = ~full & (fractions > 0)
        inner.append(cells[full])
        edge.append(cells[part])
        frac.append(fractions[part])
    return {"inner_counts": np.array([len(a) for a in inner], dtype=np.int64), "inner_cells": _concat(inner, index_dtype),
            "edge_counts": np.array([len(a) for a in edge], dtype=np.int64), "edge_cells": _concat(edge, index_dtype),
            "edge_fractions": _concat(frac, np.float32)}


def _concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """One array of ``dtype`` from many (converted while copied: no float64 / int64 intermediate)."""
    out = np.empty(sum(len(a) for a in arrays), dtype=dtype)
    pos = 0
    for a in arrays:
        out[pos:pos + len(a)] = a
        pos += len(a)
    return out
