"""Fractional pixel coverage of polygons on a raster grid (exactextract), computed once and cached.

The coverage of a layer on a grid is a sparse matrix ``C`` (zones x pixels): ``C[z, p]`` is the
fraction of pixel ``p`` (row-major index ``y * width + x``) inside zone ``z``, from exactextract's
``cell_id`` and ``coverage`` operations (exact polygon/cell intersection: a polygon smaller than a
pixel still gets its fraction; rasterstats' centre test would lose it). Every zonal sum is then one
sparse product ``C @ values`` — class areas, probability-weighted areas, valid-pixel counts — so a
month's figures for all 262 NTAs cost a few sparse products instead of a polygon pass per statistic.

``C`` depends only on the grid and the polygons, so it is cached on disk
(``<cache>/<layer>@<key16>.npz``) keyed by the grid (transform, shape, CRS), the layer's file sha256,
its zone ids and :data:`COVERAGE_VERSION`, and reused every month.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from affine import Affine
from pyproj import CRS

from nyceo.io import write_bytes_atomic
from nyceo.keys import digest
from nyceo.zonal.layers import ZoneLayer

log = logging.getLogger("nyceo.zonal")

COVERAGE_VERSION = "1"


@dataclass(frozen=True)
class RasterGrid:
    """A north-up raster grid: where pixel (y, x) lies."""

    transform: Affine
    height_px: int
    width_px: int
    crs: str

    @property
    def pixel_area_m2(self) -> float:
        return abs(self.transform.a * self.transform.e)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + self.height_px * t.e, t.c + self.width_px * t.a, t.f)

    def identity(self) -> dict:
        return {"transform": list(self.transform)[:6], "shape": [self.height_px, self.width_px],
                "crs": CRS.from_user_input(self.crs).to_epsg() or CRS.from_user_input(self.crs).to_wkt()}


def coverage_key(grid: RasterGrid, layer: ZoneLayer) -> str:
    return digest({"coverage": COVERAGE_VERSION, "grid": grid.identity(), "layer_sha256": layer.sha256,
                   "zone_ids": list(layer.gdf["zone_id"]), "geometry": _geometry_digest(layer)})


def _geometry_digest(layer: ZoneLayer) -> str:
    """Digest of the (reprojected, repaired) geometries: layers built in memory have no file to hash."""
    import hashlib

    h = hashlib.sha256()
    for wkb in layer.gdf.geometry.to_wkb():
        h.update(wkb)
    return h.hexdigest()


def compute_coverage(grid: RasterGrid, layer: ZoneLayer) -> sp.csr_matrix:
    """(zones x pixels) coverage fractions of ``layer`` on ``grid`` with exactextract (one pass)."""
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    gdf = layer.gdf.to_crs(grid.crs)
    minx, miny, maxx, maxy = grid.bounds
    dummy = np.zeros((grid.height_px, grid.width_px), dtype=np.uint8)
    src = NumPyRasterSource(dummy, xmin=minx, ymin=miny, xmax=maxx, ymax=maxy,
                            srs_wkt=CRS.from_user_input(grid.crs).to_wkt())
    res = exact_extract(src, gdf[["geometry"]], ["cell_id", "coverage"], output="pandas")
    cells, covs = list(res["cell_id"]), list(res["coverage"])
    rows = np.concatenate([np.full(len(c), i, dtype=np.int64) for i, c in enumerate(cells)] or [np.zeros(0, np.int64)])
    cols = np.concatenate([np.asarray(c, dtype=np.int64) for c in cells] or [np.zeros(0, np.int64)])
    data = np.concatenate([np.asarray(c, dtype=np.float64) for c in covs] or [np.zeros(0)])
    keep = data > 0
    shape = (len(gdf), grid.height_px * grid.width_px)
    return sp.csr_matrix((data[keep], (rows[keep], cols[keep])), shape=shape)


def cache_path(cache_dir: str, layer: ZoneLayer, key: str) -> str:
    return str(Path(cache_dir) / f"{layer.name}@{key[:16]}.npz")


def load_or_compute(grid: RasterGrid, layer: ZoneLayer, cache_dir: str | None) -> tuple[sp.csr_matrix, bool]:
    """The coverage of ``layer`` on ``grid``: from the cache when present (True), else computed and cached."""
    key = coverage_key(grid, layer)
    path = cache_path(cache_dir, layer, key) if cache_dir else None
    if path and Path(path).is_file():
        try:
            return sp.load_npz(path).tocsr(), True
        except (OSError, ValueError) as exc:  # a damaged cache file is recomputed, never trusted
            log.warning("coverage cache %s unreadable (%s); recomputing", path, exc)
    cov = compute_coverage(grid, layer)
    if path:
        buf = io.BytesIO()
        sp.save_npz(buf, cov, compressed=True)
        write_bytes_atomic(path, buf.getvalue())
    return cov, False


def zone_sums(cov: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Coverage-weighted sums per zone of per-pixel ``values`` ((y, x) or (k, y, x) -> (zones,) / (zones, k))."""
    flat = values.reshape(values.shape[0], -1).T if values.ndim == 3 else values.reshape(-1)
    return np.asarray(cov @ flat)
