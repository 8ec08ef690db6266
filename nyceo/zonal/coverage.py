"""Fractional pixel coverage of polygons on a raster grid (exactextract), computed once and cached.

The coverage of a layer on a grid is a sparse matrix ``C`` (zones x pixels): ``C[z, p]`` is the
fraction of pixel ``p`` (row-major index ``y * width + x``) inside zone ``z``, from exactextract's
``cell_id`` and ``coverage`` operations (exact polygon/cell intersection: a polygon smaller than a
pixel still gets its fraction; rasterstats' centre test would lose it). ``C`` is kept zone-major in
two parts (:class:`Compact`): the interior entries (fraction exactly 1: 96 % of the entries for the
city's NTAs), stored as pixel indices only, and the edge entries (0 < fraction < 1) with their
fractions. A month's figures are then one gather of the raster at those pixels and one 256-bin
histogram per zone (interior counted exactly, edge weighted): class areas, probability-weighted
areas and valid-pixel counts all follow from the histograms, with no sparse product.

``C`` depends only on the grid and the polygons, so it is cached (``<cache>/<layer>@<key16>.coverage``)
keyed by the grid (transform, shape, CRS), the layer's file sha256, its zone ids, the geometries and
:data:`COVERAGE_VERSION`, and reused every month. One file: the pixel indices (int32 when they fit,
4 bytes per entry), the two row-pointer arrays and the edge fractions (float32), each an ``.npy``
array read sequentially (no zip, no CRC pass): ~34 MB for the city's 262 NTAs. The cache lives under
the output root by default, on object storage too: its name is its content key, so every machine and
worker writing that root shares it safely and the (slow) first computation happens once per grid
and layer, not once per machine; ``zonal.coverage_cache`` may point at a local folder instead.

First month: exactextract's ``cell_id`` / ``coverage`` for all polygons in one call, the polygons
handed over as WKB and the per-polygon arrays kept as they come (:mod:`nyceo.zonal.extract`), no
sort (entries arrive zone by zone); the interior / edge split is one pass over the fractions.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from affine import Affine
from pyproj import CRS

from nyceo.io import atomic_local_path, is_remote, join, write_bytes_atomic
from nyceo.keys import digest
from nyceo.zonal.layers import ZoneLayer
from nyceo.zonal.remote import exists, read_bytes

log = logging.getLogger("nyceo.zonal")

COVERAGE_VERSION = "3"  # 2: pixels stored int32 when they fit; 3: interior and edge parts, .npy arrays in one file
MAGIC = b"nyceo-coverage-3\n"
GATHER_CHUNK = 1 << 16  # int32 indices gathered per take call
LOOP_MIN_ENTRIES = 2048  # interior entries per zone above which a bincount per zone beats a zone index


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


def _extract_args(grid: RasterGrid, layer: ZoneLayer) -> tuple:
    geoms = layer.gdf.to_crs(grid.crs).geometry.values
    return np.asarray(geoms), grid.transform, grid.height_px, grid.width_px, CRS.from_user_input(grid.crs).to_wkt()


def _entries(grid: RasterGrid, layer: ZoneLayer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from nyceo.zonal.extract import coverage_entries

    return coverage_entries(*_extract_args(grid, layer))


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
    """The coverage of a layer on a grid, zone-major, in two parts:

    - interior entries: pixels fully inside a zone (exactextract fraction exactly 1), stored as pixel
      index only; ``inner_ptr`` (zones + 1) are their row pointers;
    - edge entries: pixels a zone's boundary crosses (0 < fraction < 1), pixel index and fraction
      (``edge_fractions``, float32 as exactextract's fractions were kept); ``edge_ptr`` row pointers.

    ``pixels`` holds the flat indices (``y * width + x``; int32 when they fit) of the interior entries, then of the
    edge entries, so one ``take`` gathers a raster's values for both. A pixel may appear in several
    zones (overlapping layers) and in one zone's interior and another's edge (shared boundaries)."""

    pixels: np.ndarray
    inner_ptr: np.ndarray
    edge_ptr: np.ndarray
    edge_fractions: np.ndarray

    def __post_init__(self) -> None:
        n_inner, n_edge = int(self.inner_ptr[-1]), int(self.edge_ptr[-1])
        if len(self.inner_ptr) != len(self.edge_ptr) or n_inner + n_edge != len(self.pixels) \
                or n_edge != len(self.edge_fractions):
            raise ValueError(f"inconsistent coverage parts: {len(self.pixels)} pixels, {n_inner} interior + "
                             f"{n_edge} edge entries, {len(self.edge_fractions)} fractions")
        self.n_inner = n_inner
        self.edge_rows = np.repeat(np.arange(self.n_zones, dtype=np.intp), np.diff(self.edge_ptr))
        self.edge_weights = self.edge_fractions.astype(np.float64)

    @classmethod
    def from_entries(cls, counts: np.ndarray, cells: np.ndarray, fractions: np.ndarray) -> "Compact":
        """Split zone-major entries (``counts`` per zone, flat ``cells``, ``fractions`` > 0) into the
        interior (fraction 1) and edge parts."""
        fractions = fractions.astype(np.float32, copy=False)
        edge = np.flatnonzero(fractions < 1)
        row_ptr = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        edge_ptr = np.searchsorted(edge, row_ptr).astype(np.int64)
        pixels = np.concatenate([np.delete(cells, edge), cells[edge]]).astype(_index_dtype(cells), copy=False)
        return cls(pixels, row_ptr - edge_ptr, edge_ptr, fractions[edge])

    @classmethod
    def from_coverage(cls, cov: sp.csr_matrix) -> "Compact":
        return cls.from_entries(np.diff(cov.indptr), cov.indices, cov.data)

    @classmethod
    def compute(cls, grid: RasterGrid, layer: ZoneLayer) -> "Compact":
        """exactextract's coverage of ``layer`` on ``grid``, split into the two parts as it is collected."""
        from nyceo.zonal.extract import coverage_parts

        p = coverage_parts(*_extract_args(grid, layer))
        ptr = lambda counts: np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])  # noqa: E731
        return cls(np.concatenate([p["inner_cells"], p["edge_cells"]]), ptr(p["inner_counts"]), ptr(p["edge_counts"]),
                   p["edge_fractions"])

    @property
    def n_zones(self) -> int:
        return len(self.inner_ptr) - 1

    def gather(self, raster: np.ndarray) -> np.ndarray:
        """Values of ``raster`` (y, x) at every entry: interior entries first, then edge entries.

        int32 pixel indices are taken in chunks: numpy converts take's indices to intp, and a chunk's
        conversion stays in cache (as fast as intp indices, without holding them: half the memory)."""
        flat = np.ravel(raster)
        if self.pixels.dtype == np.intp:
            return flat.take(self.pixels)
        out = np.empty(len(self.pixels), dtype=flat.dtype)
        for a in range(0, len(self.pixels), GATHER_CHUNK):
            flat.take(self.pixels[a:a + GATHER_CHUNK], out=out[a:a + GATHER_CHUNK])
        return out

    def sums(self, values: np.ndarray) -> np.ndarray:
        """Coverage-weighted sums per zone (float64) of gathered ``values``."""
        inner, edge = values[:self.n_inner], values[self.n_inner:]
        out = np.zeros(self.n_zones)
        nonempty = np.flatnonzero(np.diff(self.inner_ptr))
        if len(nonempty):  # reduceat over the non-empty segments only (it misreads empty ones)
            out[nonempty] = np.add.reduceat(inner, self.inner_ptr[nonempty], dtype=np.float64)
        return out + np.bincount(self.edge_rows, weights=edge * self.edge_weights, minlength=self.n_zones)

    def histograms(self, values: np.ndarray) -> np.ndarray:
        """(zones, 256) coverage of each value of gathered uint8 ``values``: the interior counted exactly,
        the edge weighted by its fractions. Every zonal figure of a class map or a uint8 probability
        layer is a column sum or a dot product of these."""
        if values.dtype != np.uint8:
            raise TypeError(f"histograms needs uint8 values, got {values.dtype}")
        edge = self.edge_rows * 256 + values[self.n_inner:]
        out = np.bincount(edge, weights=self.edge_weights, minlength=self.n_zones * 256).reshape(self.n_zones, 256)
        out += self._inner_counts(values[:self.n_inner])
        return out

    def _inner_counts(self, inner: np.ndarray) -> np.ndarray:
        """(zones, 256) counts of the interior values: one bincount per zone when zones are large (cheaper
        than a per-entry zone index), else one bincount over zone * 256 + value."""
        if self.n_zones * LOOP_MIN_ENTRIES <= self.n_inner:
            ptr = self.inner_ptr
            return np.stack([np.bincount(inner[ptr[z]:ptr[z + 1]], minlength=256) for z in range(self.n_zones)])
        rows = np.repeat(np.arange(self.n_zones, dtype=np.intp), np.diff(self.inner_ptr))
        return np.bincount(rows * 256 + inner, minlength=self.n_zones * 256).reshape(self.n_zones, 256)

    def save(self, dest: str) -> None:
        """One file: a magic line, then the parts as .npy arrays (pixels int32 when they fit); atomic."""
        if is_remote(dest):
            buf = io.BytesIO()
            self._write(buf)
            write_bytes_atomic(dest, buf.getvalue())
            return
        with atomic_local_path(dest) as tmp, open(tmp, "wb") as f:
            self._write(f)

    def _write(self, f) -> None:  # noqa: ANN001 - a binary file object
        f.write(MAGIC)
        for arr in (self.pixels, self.inner_ptr, self.edge_ptr, self.edge_fractions):
            np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)

    @classmethod
    def load(cls, path: str) -> "Compact":
        """Read a cache file: sequential reads of a local file, or one read of an object."""
        with (open(path, "rb") if not is_remote(path) else io.BytesIO(read_bytes(path))) as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise ValueError(f"{path} is not a coverage cache file of this version")
            pixels, inner_ptr, edge_ptr, fractions = (np.lib.format.read_array(f, allow_pickle=False) for _ in range(4))
        return cls(pixels, inner_ptr, edge_ptr, fractions)


def _index_dtype(cells: np.ndarray) -> type:
    """int32 for flat pixel indices when they fit (every grid under 2**31 pixels), else int64."""
    return np.int32 if len(cells) == 0 or int(cells.max()) < 2**31 else np.int64


def cache_path(cache_dir: str, layer: ZoneLayer, key: str) -> str:
    return join(cache_dir, f"{layer.name}@{key[:16]}.coverage")


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
