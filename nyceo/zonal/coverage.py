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


@dataclass
class Compact:
    """A coverage matrix restricted to the pixels it touches: ``matrix`` (zones x touched pixels, float32)
    and ``pixels`` (their flat indices in the grid). ``rows`` is each stored entry's zone."""

    matrix: sp.csr_matrix
    pixels: np.ndarray

    @classmethod
    def from_coverage(cls, cov: sp.csr_matrix) -> "Compact":
        touched = np.zeros(cov.shape[1], dtype=bool)  # O(pixels); np.unique sorts (slow at city scale)
        touched[cov.indices] = True
        pixels = np.flatnonzero(touched)
        remap = (np.cumsum(touched, dtype=np.int64) - 1)[cov.indices].astype(np.int32)
        m = sp.csr_matrix((cov.data.astype(np.float32), remap, cov.indptr), shape=(cov.shape[0], len(pixels)))
        return cls(m, pixels)

    @property
    def n_zones(self) -> int:
        return self.matrix.shape[0]

    @property
    def rows(self) -> np.ndarray:
        if not hasattr(self, "_rows"):
            self._rows = np.repeat(np.arange(self.n_zones, dtype=np.intp), np.diff(self.matrix.indptr))
            self._weights = self.matrix.data.astype(np.float64)
        return self._rows

    def gather(self, raster: np.ndarray) -> np.ndarray:
        """Values of ``raster`` (y, x) at the touched pixels."""
        return raster.reshape(-1)[self.pixels]

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Coverage-weighted sums per zone of values at the touched pixels."""
        return np.asarray(self.matrix @ values.astype(np.float32, copy=False), dtype=np.float64)

    def code_sums(self, codes: np.ndarray, n_codes: int) -> np.ndarray:
        """(zones, n_codes) coverage of each code (0..n_codes-1) at the touched pixels: one bincount pass."""
        index = self.rows * n_codes
        index += codes[self.matrix.indices]
        flat = np.bincount(index, weights=self._weights, minlength=self.n_zones * n_codes)
        return flat.reshape(self.n_zones, n_codes)

    def save(self, dest: str) -> None:
        buf = io.BytesIO()
        m = self.matrix
        np.savez(buf, data=m.data, indices=m.indices, indptr=m.indptr, pixels=self.pixels,
                 shape=np.array(m.shape, dtype=np.int64))
        write_bytes_atomic(dest, buf.getvalue())

    @classmethod
    def load(cls, path: str) -> "Compact":
        with np.load(path) as z:
            m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return cls(m, z["pixels"])


def cache_path(cache_dir: str, layer: ZoneLayer, key: str) -> str:
    return str(Path(cache_dir) / f"{layer.name}@{key[:16]}.npz")


def load_or_compute(grid: RasterGrid, layer: ZoneLayer, cache_dir: str | None) -> tuple[Compact, bool]:
    """The coverage of ``layer`` on ``grid``: from the cache when present (True), else computed and cached.

    The cache is uncompressed (about 12 bytes per covered pixel: ~100 MB for the NTAs of the city) so a
    month reads it in well under a second."""
    key = coverage_key(grid, layer)
    path = cache_path(cache_dir, layer, key) if cache_dir else None
    if path and Path(path).is_file():
        try:
            return Compact.load(path), True
        except (OSError, ValueError, KeyError) as exc:  # a damaged cache file is recomputed, never trusted
            log.warning("coverage cache %s unreadable (%s); recomputing", path, exc)
    compact = Compact.from_coverage(compute_coverage(grid, layer))
    if path:
        compact.save(path)
    return compact, False
