"""The static synthetic New York: grid, land cover, buildings, texture (seeded, vectorized).

Land is the real borough polygons (DCP 24C); everything outside is water. Parks (NTA type 9) are
mostly forest with meadows, cemeteries (7) mostly grass, airports (8) runways/grass/bare ground,
residential areas are built up on a street grid with buildings, with low-frequency patches of
trees, grass and bare ground. Classes follow the lulc_nyc training-label order (REFERENCE §3):
0 water, 1 developed, 2 forest, 3 herbaceous, 4 other (bare).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.features import rasterize
from scipy import ndimage
from scipy.special import ndtri

from nyceo.boundaries import load_boroughs, load_ntas

CRS = "EPSG:32618"
WATER, DEVELOPED, FOREST, HERBACEOUS, OTHER = 0, 1, 2, 3, 4
SNAP_M = 60.0          # every grid edge is a multiple of 60 m, so 10/20/60 m pixels nest exactly
LATTICE_M = 2240.0     # the chip lattice (nyceo.grid): the city grid covers whole chips
LATTICE_ORIGIN_Y_M = 5_017_600.0
NOISE_CELL_M = 480.0   # low-frequency noise: one random value per 480 m cell, bilinear in between


@dataclass(frozen=True)
class CityGrid:
    """The 10 m grid of the embedded city (EPSG:32618); bounds are multiples of 60 m."""

    minx_m: float
    miny_m: float
    maxx_m: float
    maxy_m: float

    @property
    def shape_10m(self) -> tuple[int, int]:
        return int(round((self.maxy_m - self.miny_m) / 10)), int(round((self.maxx_m - self.minx_m) / 10))

    def transform(self, res_m: float) -> Affine:
        return Affine(res_m, 0.0, self.minx_m, 0.0, -res_m, self.maxy_m)

    def shape(self, res_m: float) -> tuple[int, int]:
        f = int(round(res_m / 10))
        h, w = self.shape_10m
        return h // f, w // f

    @property
    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        t = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
        lon, lat = t.transform(
            [self.minx_m, self.maxx_m, self.minx_m, self.maxx_m],
            [self.miny_m, self.miny_m, self.maxy_m, self.maxy_m],
        )
        return min(lon), min(lat), max(lon), max(lat)


def _snap_out(lo: float, hi: float, step: float, origin: float = 0.0) -> tuple[float, float]:
    return origin + np.floor((lo - origin) / step) * step, origin + np.ceil((hi - origin) / step) * step


def city_grid(bbox_lonlat: tuple[float, float, float, float] | None = None) -> CityGrid:
    """The grid over the boroughs (or over ``bbox_lonlat``), snapped outward to whole chips of the
    lattice and then to 60 m."""
    if bbox_lonlat is None:
        minx, miny, maxx, maxy = load_boroughs(CRS).total_bounds
    else:
        t = Transformer.from_crs("EPSG:4326", CRS, always_xy=True)
        x0, y0, x1, y1 = bbox_lonlat
        xs, ys = t.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
        minx, miny, maxx, maxy = min(xs), min(ys), max(xs), max(ys)
    minx, maxx = _snap_out(minx, maxx, LATTICE_M)
    miny, maxy = _snap_out(miny, maxy, LATTICE_M, LATTICE_ORIGIN_Y_M)
    minx, maxx = _snap_out(minx, maxx, SNAP_M)
    miny, maxy = _snap_out(miny, maxy, SNAP_M)
    return CityGrid(float(minx), float(miny), float(maxx), float(maxy))


def _lerp_plan(n_out: int, f: float) -> tuple[np.ndarray, np.ndarray]:
    """Coarse node index left of each fine pixel and the weight of the next node (node k at k·f)."""
    pos = np.arange(n_out, dtype=np.float64) / f
    i0 = np.floor(pos).astype(np.int64)
    return i0, (pos - i0).astype(np.float32)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], res_m: float,
                 cell_m: float = NOISE_CELL_M) -> np.ndarray:
    """Low-frequency noise (≈ N(0, 1)), bilinear between random values on a ``cell_m`` grid.

    Separable float32 interpolation (x on the coarse rows, then y): a few passes over the output."""
    f = cell_m / res_m
    coarse = rng.standard_normal((int(np.ceil(shape[0] / f)) + 2, int(np.ceil(shape[1] / f)) + 2))
    coarse = coarse.astype(np.float32)
    iy, wy = _lerp_plan(shape[0], f)
    ix, wx = _lerp_plan(shape[1], f)
    rows = coarse[: iy[-1] + 2]
    along_x = rows[:, ix] * (1 - wx)
    along_x += rows[:, ix + 1] * wx
    fine = along_x[iy] * (1 - wy)[:, None]
    fine += along_x[iy + 1] * wy[:, None]
    return fine


def _rasterize(geoms, values, grid: CityGrid, fill: int = 0) -> np.ndarray:
    pairs = [(g, int(v)) for g, v in zip(geoms, values) if g is not None and not g.is_empty]
    return rasterize(pairs, out_shape=grid.shape_10m, transform=grid.transform(10.0), fill=fill,
                     dtype="uint8")


TEXTURE_LEVELS = 16
# the 16 texture levels are the mid-quantiles of N(0, 1)
TEXTURE_Z = ndtri((np.arange(TEXTURE_LEVELS) + 0.5) / TEXTURE_LEVELS).astype(np.float32)


@dataclass(frozen=True)
class Landscape:
    """Per-pixel truth and surface properties on the 10 m grid."""

    grid: CityGrid
    landcover: np.ndarray   # uint8 (y, x), classes above
    building: np.ndarray    # bool (y, x)
    codes: dict             # res_m -> uint8 (y, x): surface class (5 = roof) * 16 + texture level

    def code(self, res_m: float) -> np.ndarray:
        return self.codes[int(res_m)]


def subsample(arr: np.ndarray, factor: int) -> np.ndarray:
    """The pixel nearest each coarse pixel's centre (10 m -> 20/60 m grids nest exactly)."""
    return arr if factor == 1 else arr[factor // 2 :: factor, factor // 2 :: factor]


def _street_buildings(shape: tuple[int, int], rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """Buildings on a street grid: 80 m x 200 m blocks, 20 m streets, lots of 40 m, random gaps."""
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    street = ((rows % 22) >= 20)[:, None] | ((cols % 10) >= 8)[None, :]
    lots = rng.random((shape[0] // 4 + 1, shape[1] // 10 + 1), dtype=np.float32)
    lot_rand = lots[(rows // 4)[:, None], (cols // 10)[None, :]]
    return ~street & (lot_rand < density)


def _classes(grid: CityGrid, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    shape = grid.shape_10m
    ntas = load_ntas(CRS)
    nta_type = _rasterize(ntas.geometry, ntas["NTAType"].astype(int) + 1, grid)  # 0 = water
    land = nta_type > 0
    boroughs = load_boroughs(CRS)
    land |= _rasterize(boroughs.geometry, np.ones(len(boroughs)), grid) > 0
    nta_type = np.where(land & (nta_type == 0), 1, nta_type) - 1  # residential where no NTA; -1 water
    veg = smooth_noise(rng, shape, 10.0, 960.0) + 0.5 * smooth_noise(rng, shape, 10.0, 240.0)
    patch = smooth_noise(rng, shape, 10.0, 240.0)
    lc = np.full(shape, DEVELOPED, np.uint8)
    # residential / other: mostly built, vegetated where the vegetation field is high
    lc[veg > 1.0] = HERBACEOUS
    lc[veg > 1.4] = FOREST
    lc[(patch > 1.7) & (veg <= 1.0)] = OTHER
    park = nta_type == 9
    lc[park] = np.where(patch[park] > 0.6, HERBACEOUS, FOREST)
    cem = nta_type == 7
    lc[cem] = np.where(patch[cem] > 0.8, FOREST, HERBACEOUS)
    air = nta_type == 8
    lc[air] = np.where(patch[air] > 0.4, DEVELOPED, np.where(patch[air] < -1.2, OTHER, HERBACEOUS))
    lc[~land] = WATER
    density = np.clip(0.55 + 0.25 * smooth_noise(rng, shape, 10.0, 1920.0), 0.15, 0.95)
    building = _street_buildings(shape, rng, density) & (lc == DEVELOPED) & ~air
    return lc, building


@lru_cache(maxsize=2)
def build_landscape(grid: CityGrid, seed: int) -> Landscape:
    """The static city for ``seed`` on ``grid`` (cached: every month reuses it)."""
    rng = np.random.default_rng([seed, 1])
    landcover, building = _classes(grid, rng)
    # texture varies per 20 m cell (like the radar speckle): realistic, and the 10 m bands compress
    h, w = grid.shape_10m
    texture = rng.integers(0, TEXTURE_LEVELS, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 2, axis=0), 2, axis=1)[:h, :w]
    surface = np.where(building, np.uint8(5), landcover)
    code10 = surface * np.uint8(TEXTURE_LEVELS) + texture
    codes = {10: code10, 20: np.ascontiguousarray(subsample(code10, 2)),
             60: np.ascontiguousarray(subsample(code10, 6))}
    for arr in (landcover, building, *codes.values()):
        arr.setflags(write=False)
    return Landscape(grid, landcover, building, codes)
