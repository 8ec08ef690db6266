"""The coverage cache's interior/edge layout against exactextract's own per-polygon fractions.

A small seeded class map and probability layer (uint8, 255 nodata) in EPSG:32618 and polygons that
exercise the split: one smaller than a pixel (edge entries only), two sharing a boundary that crosses
pixels (each pixel split between them), one overlapping both, and one irregular polygon. Areas from
the cache (computed, written, read back) must equal the sums of exactextract's ``coverage`` per
``values`` computed here, entry by entry (fractions rounded to float32 as the cache keeps them).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from exactextract import exact_extract
from exactextract.raster import NumPyRasterSource
from pyproj import CRS

from nyceo.zonal import coverage
from nyceo.zonal.coverage import Compact, RasterGrid, compute_coverage, load_or_compute
from nyceo.zonal.engine import Groups, class_area_table
from nyceo.zonal.layers import make_layer

X0, Y0, N = 500000.0, 4500000.0, 48
CLASSES = ["water", "developed", "forest", "herbaceous"]
PX_KM2 = 1e-4


def _rasters() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(14)
    cm = rng.integers(0, len(CLASSES), size=(N, N)).astype(np.uint8)
    cm[rng.random((N, N)) < 0.05] = 255
    p = rng.integers(0, 255, size=(N, N)).astype(np.uint8)  # p * 254; 255 = nodata
    p[cm == 255] = 255
    return cm, p


def _polygons() -> list:
    x, y = X0, Y0
    tiny = shapely.box(x + 102, y - 107, x + 106, y - 102)  # 4 x 5 m inside one pixel
    # two polygons sharing a boundary that runs diagonally through pixels
    west = shapely.Polygon([(x + 33, y - 41), (x + 211.5, y - 27), (x + 187, y - 303), (x + 41, y - 299)])
    cut = shapely.LineString([(x + 120.3, y - 20), (x + 96.7, y - 320)])
    halves = sorted(shapely.get_parts(shapely.ops.split(west, cut)), key=lambda g: g.centroid.x)
    overlap = shapely.Point(x + 118, y - 160).buffer(57.3)  # overlaps both halves
    ring = shapely.Point(x + 330, y - 330).buffer(80.2).difference(shapely.Point(x + 335, y - 321).buffer(31.6))
    return [tiny, *halves, overlap, ring]


def _exactextract_sums(cm: np.ndarray, p: np.ndarray, geoms: list) -> tuple[np.ndarray, np.ndarray]:
    """Per polygon: coverage summed per class-map value (256 columns) and sum of coverage * p / 254."""
    wkt = CRS.from_epsg(32618).to_wkt()
    bounds = dict(xmin=X0, ymin=Y0 - 10 * N, xmax=X0 + 10 * N, ymax=Y0)
    gdf = gpd.GeoDataFrame({"i": range(len(geoms))}, geometry=geoms, crs="EPSG:32618")
    out = []
    for arr in (cm, p):
        feats = exact_extract(NumPyRasterSource(arr, srs_wkt=wkt, **bounds), gdf, ["values", "coverage"], include_cols=["i"])
        out.append(sorted(feats, key=lambda f: f["properties"]["i"]))
    hist = np.zeros((len(geoms), 256))
    psum = np.zeros(len(geoms))
    for z, (fc, fp) in enumerate(zip(*out)):
        cov = np.asarray(fc["properties"]["coverage"]).astype(np.float32).astype(np.float64)  # as the cache keeps it
        np.add.at(hist[z], np.asarray(fc["properties"]["values"]).astype(int), cov)
        pv = np.asarray(fp["properties"]["values"]).astype(float)
        psum[z] = (np.asarray(fp["properties"]["coverage"]).astype(np.float32) * np.where(pv == 255, 0, pv / 254)).sum()
    return hist, psum


@pytest.fixture(scope="module")
def case():
    grid = RasterGrid(rasterio.Affine(10, 0, X0, 0, -10, Y0), N, N, "EPSG:32618")
    geoms = _polygons()
    gdf = gpd.GeoDataFrame({"id": [f"z{i}" for i in range(len(geoms))]}, geometry=geoms, crs="EPSG:32618")
    layer = make_layer(gdf, "t", "coverage test layer", "0", "EPSG:32618", "id")
    cm, p = _rasters()
    return grid, layer, geoms, cm, p, _exactextract_sums(cm, p, geoms)


@pytest.mark.parametrize("loop_min_entries", [0, 2048])  # 0: one bincount per zone; 2048: one over zone * 256
def test_cached_layout_gives_exactextracts_areas(case, tmp_path, monkeypatch, loop_min_entries):
    grid, layer, geoms, cm, p, (hist, psum) = case
    monkeypatch.setattr(coverage, "LOOP_MIN_ENTRIES", loop_min_entries)
    computed, hit = load_or_compute(grid, layer, str(tmp_path))
    cached, hit2 = load_or_compute(grid, layer, str(tmp_path))
    assert not hit and hit2 and cached.pixels.dtype == np.int32
    for part in ("pixels", "inner_ptr", "edge_ptr", "edge_fractions"):
        np.testing.assert_array_equal(getattr(cached, part), getattr(computed, part))
    t = class_area_table(cached, grid, cm, CLASSES, {"developed": p}, Groups(("developed",), ()))
    for k, c in enumerate(CLASSES):
        np.testing.assert_allclose(t[f"{c}_km2"], hist[:, k] * PX_KM2, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(t["nodata_km2"], hist[:, 255] * PX_KM2, rtol=1e-12, atol=1e-18)
    np.testing.assert_allclose(t["zone_km2"], hist.sum(axis=1) * PX_KM2, rtol=1e-12)
    np.testing.assert_allclose(t["developed_p_km2"], psum * PX_KM2, rtol=1e-6)  # exactextract sums float32 * p
    # the split really is exercised: the tiny polygon is all edge, the large ones mostly interior
    inner, edge = np.diff(cached.inner_ptr), np.diff(cached.edge_ptr)
    assert inner[0] == 0 and edge[0] == 1 and (inner[1:] > edge[1:]).all()
    assert t.loc[0, "zone_km2"] == pytest.approx(20e-6, rel=1e-6)  # 4 x 5 m of the pixel it lies in
    # the two halves share their boundary: together they cover exactly the uncut polygon
    assert t.loc[1, "zone_km2"] + t.loc[2, "zone_km2"] == pytest.approx(geoms[1].union(geoms[2]).area / 1e6, rel=1e-6)


def test_layout_equals_the_plain_coverage_matrix(case):
    """Compact.compute (split while collected) equals the split of exactextract's plain (zone x pixel) matrix."""
    grid, layer, *_ = case
    a, b = Compact.compute(grid, layer), Compact.from_coverage(compute_coverage(grid, layer))
    for part in ("pixels", "inner_ptr", "edge_ptr", "edge_fractions"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    values = np.arange(N * N, dtype=np.float64).reshape(N, N)
    dense = compute_coverage(grid, layer).astype(np.float64) @ values.reshape(-1)
    np.testing.assert_allclose(a.sums(a.gather(values)), dense, rtol=1e-12)


def test_a_damaged_cache_file_is_recomputed(case, tmp_path):
    grid, layer, *_ = case
    load_or_compute(grid, layer, str(tmp_path))
    (path,) = tmp_path.glob("t@*.coverage")
    path.write_bytes(path.read_bytes()[:100])
    again, hit = load_or_compute(grid, layer, str(tmp_path))
    assert not hit and again.n_zones == len(layer.gdf)
