"""The aligned fast path (native windowed reads + numpy resampling) gives GDAL's pixels.

Seeded random rasters in EPSG:32618 at 10/20/60 m (uint16, nodata 0, a slanted swath edge of
nodata), SCL (uint8) and Sentinel-1-like float32 (nodata -32768), read onto lattice blocks that lie
inside, across the raster's edge and across the swath edge: every pixel must equal what stackstac +
GDAL's warper produce (60 m bilinear: exact half-way ties may round the other way by 1 DN).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.enums import Resampling

from catalogs.static import item_from_files
from nyceo.acquire.load import GridSpec, read_date, read_date_aligned
from nyceo.acquire.testing import write_tif

X0, Y1 = 582_400.0, 4_515_200.0          # on the 60 m grid and the 2240 m lattice
EXTENT_M = 6720.0                          # 3 x 3 chips
BLOCKS = {
    "inside": (X0 + 2240.0, Y1 - 2240.0, 2240.0),
    "past_edge": (X0 + 4480.0, Y1 - 4480.0, 4480.0),   # right/bottom half outside the raster
    "whole": (X0, Y1, EXTENT_M),
}


def _raster(root: Path, name: str, res: float, dtype: str, nodata: float, rng: np.random.Generator) -> Path:
    n = int(EXTENT_M / res)
    if dtype == "uint8":
        data = rng.choice(np.array([0, 3, 4, 5, 6, 8, 9, 10], np.uint8), (n, n))
    elif dtype == "float32":
        data = rng.gamma(2.0, 0.03, (n, n)).astype(np.float32)
    else:
        data = rng.integers(1, 12000, (n, n)).astype(np.uint16)
    rows = np.arange(n)[:, None] * res
    cols = np.arange(n)[None, :] * res
    data[cols < 1500.0 + 0.3 * rows] = nodata      # a slanted swath edge
    return write_tif(root / f"{name}.tif", data, Affine(res, 0, X0, 0, -res, Y1), "EPSG:32618", nodata)


@pytest.fixture(scope="module")
def items(tmp_path_factory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("aligned")
    rng = np.random.default_rng(42)
    when = dt.datetime(2024, 7, 8, tzinfo=dt.timezone.utc)
    s2 = {k: _raster(root / "s2", k, r, "uint16", 0, rng) for k, r in (("B02", 10), ("B05", 20), ("B01", 60))}
    s2["SCL"] = _raster(root / "s2", "SCL", 20, "uint8", 0, rng)
    s2b = {"B05": _raster(root / "s2b", "B05", 20, "uint16", 0, rng)}
    s1 = {k: _raster(root / "s1", k, 10, "float32", -32768.0, rng) for k in ("vv", "vh")}
    return {"s2": item_from_files("s2a", "sentinel-2-l2a", when, s2),
            "s2b": item_from_files("s2b", "sentinel-2-l2a", when, s2b),
            "s1": item_from_files("s1", "sentinel-1-rtc", when, s1)}


def _spec(block: str, res: float = 10.0) -> GridSpec:
    x0, y1, size = BLOCKS[block]
    return GridSpec(32618, res, (x0, y1 - size, x0 + size, y1))


def _both(items_: list, assets: list[str], spec: GridSpec, **kw) -> tuple[np.ndarray, np.ndarray]:
    fast = read_date_aligned(items_, assets, spec, fill=np.dtype(kw["dtype"]).type(kw["fill_value"]),
                             threads=2, resampling=kw["resampling"], dtype=np.dtype(kw["dtype"]))
    assert fast is not None, "these assets are on the grid: the fast path must apply"
    return fast, read_date(items_, assets, spec, aligned=False, **kw)


@pytest.mark.parametrize("block", sorted(BLOCKS))
def test_bilinear_equals_gdal(items, block):
    kw = dict(resampling=Resampling.bilinear, dtype=np.uint16, fill_value=0)
    fast, gdal = _both([items["s2"]], ["B02", "B05"], _spec(block), **kw)
    assert (gdal == 0).any() and (gdal != 0).any()        # the block crosses the swath edge
    assert np.array_equal(fast, gdal)                      # 10 m copy and 20 m bilinear: bit for bit
    fast, gdal = _both([items["s2"]], ["B01"], _spec(block), **kw)
    assert np.array_equal(fast == 0, gdal == 0)
    diff = np.abs(fast.astype(int) - gdal)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.02    # 60 m: only half-way ties differ
    kw = dict(resampling=Resampling.bilinear, dtype=np.float32, fill_value=np.nan)
    fast, gdal = _both([items["s1"]], ["vv", "vh"], _spec(block), **kw)
    assert np.isnan(gdal).any() and np.array_equal(fast, gdal, equal_nan=True)


@pytest.mark.parametrize("res", [10.0, 80.0])
def test_nearest_scl_equals_gdal(items, res):
    for block in BLOCKS:
        kw = dict(resampling=Resampling.nearest, dtype=np.uint8, fill_value=0)
        fast, gdal = _both([items["s2"]], ["SCL"], _spec(block, res), **kw)
        assert np.array_equal(fast, gdal), block


def test_mosaic_last_item_on_top(items):
    kw = dict(resampling=Resampling.bilinear, dtype=np.uint16, fill_value=0)
    fast, gdal = _both([items["s2"], items["s2b"]], ["B05"], _spec("whole"), **kw)
    assert np.array_equal(fast, gdal)


def test_other_crs_or_pixels_take_the_general_path(items):
    kw = dict(resampling=Resampling.bilinear, dtype=np.dtype(np.uint16), fill=np.uint16(0), threads=1)
    x0, y1, size = BLOCKS["inside"]
    shifted = GridSpec(32618, 10.0, (x0 + 5.0, y1 - size, x0 + size + 5.0, y1))  # half a pixel off
    assert read_date_aligned([items["s2"]], ["B02"], shifted, **kw) is None
    other_crs = GridSpec(32617, 10.0, _spec("inside").bounds)
    assert read_date_aligned([items["s2"]], ["B02"], other_crs, **kw) is None
    coarse = GridSpec(32618, 40.0, _spec("inside").bounds)     # bilinear downsampling: GDAL widens
    assert read_date_aligned([items["s2"]], ["B05"], coarse, **kw) is None
