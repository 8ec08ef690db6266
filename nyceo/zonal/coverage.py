"""Fractional pixel coverage of polygons on a raster grid (exactextract), computed once and cached.

The coverage of a layer on a grid is a sparse matrix ``C`` (zones x pixels): ``C[z, p]`` is the
fraction of pixel ``p`` (row-major index ``y * width + x``) inside zone ``z``, from exactextract's
``cell_id`` and ``coverage`` operations (exact polygon/cell intersection: a polygon smaller than a
pixel still gets its fraction; rasterstats' centre test would lose it). Every zonal sum is then one
sparse product ``C @ values`` — class areas, probability-weighted areas, valid-pixel counts — so a
month's figures for all 262 NTAs cost a few sparse products instead of a polygon pass per statistic.

``C`` depends only on the grid and the polygons, so it is cached (``<cache>/<layer>@<key16>.npz``)
keyed by the grid (transform, shape, CRS), the layer's file sha256, its zone ids, the geometries and
:data:`COVERAGE_VERSION`, and reused every month. Stored compactly: the touched pixels' flat indices
(int32), and per entry the column among them (int32) and the fraction (float32), zone-major with row
pointers: ~12 bytes per covered pixel (95 MB for the city's 262 NTAs). The cache lives under the
output root by default, on object storage too: its name is its content key, so every machine and
worker writing that root shares it safely and the (slow) first computation happens once per grid
and layer, not once per machine; ``zonal.coverage_cache`` may point at a local folder instead.

First month: exactextract's ``cell_id`` / ``coverage`` for all polygons in one call, the polygons
handed over as WKB and the per-polygon arrays kept as they come (:mod:`nyceo.zonal.extract`), no
sort (entries arrive zone by zone).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from affine import Affine
from pyproj import CRS

from nyceo.io import join, write_bytes_atomic
from nyceo.keys import digest
from nyceo.zonal.layers import ZoneLayer
from nyceo.zonal.remote import exists, read_bytes

log = logging.getLogger("nyceo.zonal")

COVERAGE_VERSION = "2"  # 2: pixels stored int32 when they fit


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


def _entries(grid: RasterGrid, layer: ZoneLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from nyceo.zonal.extract import coverage_entries

    geoms = layer.gdf.to_crs(grid.crs).geometry.values
    return coverage_entries(np.asarray(geoms), grid.transform, grid.height_px, grid.width_px,
                            CRS.from_user_input(grid.crs).to_wkt())


def _indptr(counts: np.ndarray) -> np.ndarray:
    """CSR row pointers from entries per zone (no sort: exactextract returns them zone by zone)."""
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return indptr.astype(np.int32 if indptr[-1] < 2**31 else np.int64)  # int32 indices stay int32 in scipy


def compute_coverage(grid: RasterGrid, layer: ZoneLayer) -> sp.csr_matrix:
    """(zones x pixels) coverage fractions of ``layer`` on ``grid`` with exactextract (one call)."""
    counts, cells, fractions = _entries(grid, layer)
    shape = (len(layer.gdf), grid.height_px * grid.width_px)
    return sp.csr_matrix((fractions, cells, _indptr(counts)), shape=shape)


@dataclass
class Compact:
    """A coverage matrix restricted to the pixels it touches: ``matrix`` (zones x touched pixels, float32)
    and ``pixels`` (their flat indices in the grid). ``rows`` is each stored entry's zone."""

    matrix: sp.csr_matrix
    pixels: np.ndarray

    @classmethod
    def from_coverage(cls, cov: sp.csr_matrix) -> "Compact":
        return cls.from_csr_parts(cov.data, cov.indices, cov.indptr, cov.shape[1])

    @classmethod
    def from_csr_parts(cls, fractions: np.ndarray, cells: np.ndarray, indptr: np.ndarray, n_pixels: int) -> "Compact":
        """Restrict (zones x all pixels) CSR parts to the touched pixels (flat indices int32 when they fit)."""
        index_dtype = np.int32 if n_pixels < 2**31 else np.int64
        touched = np.zeros(n_pixels, dtype=bool)  # O(pixels) and no sort (np.unique is slow at city scale)
        touched[cells] = True
        pixels = np.flatnonzero(touched).astype(index_dtype)
        lookup = np.empty(n_pixels, dtype=np.int32)  # only the touched entries are ever read
        lookup[pixels] = np.arange(len(pixels), dtype=np.int32)
        m = sp.csr_matrix((fractions.astype(np.float32, copy=False), lookup[cells], indptr),
                          shape=(len(indptr) - 1, len(pixels)))
        return cls(m, pixels)

    @classmethod
    def compute(cls, grid: RasterGrid, layer: ZoneLayer) -> "Compact":
        counts, cells, fractions = _entries(grid, layer)
        return cls.from_csr_parts(fractions, cells, _indptr(counts), grid.height_px * grid.width_px)

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
        with np.load(io.BytesIO(read_bytes(path))) as z:
            m = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            return cls(m, z["pixels"])


def cache_path(cache_dir: str, layer: ZoneLayer, key: str) -> str:
    return join(cache_dir, f"{layer.name}@{key[:16]}.npz")


def load_or_compute(grid: RasterGrid, layer: ZoneLayer, cache_dir: str | None) -> tuple[Compact, bool]:
    """The coverage of ``layer`` on ``grid``: from the cache when present (True), else computed and cached.

    The cache is uncompressed (about 12 bytes per covered pixel: ~100 MB for the NTAs of the city) so a
    month reads it in well under a second."""
    key = coverage_key(grid, layer)
    path = cache_path(cache_dir, layer, key) if cache_dir else None
    if path and exists(path):
        try:
            return Compact.load(path), True
        except (OSError, ValueError, KeyError, EOFError) as exc:  # a damaged cache file is recomputed, never trusted
            log.warning("coverage cache %s unreadable (%s); recomputing", path, exc)
    compact = Compact.compute(grid, layer)
    if path:
        compact.save(path)
    return compact, False
