"""References onto the chip grid: remap, mode resampling, other CRSs, vectors (pixel-centre rule and
fraction covered), and every bad input as a clear error."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Transformer

from nyceo.evaluate.reference import EvaluateError, check_adapter, load_reference, to_adapter_classes
from tests.evaluate_fixtures import LULC, area_of, make_config, write_raster

WC = {10: "forest", 20: "forest", 30: "herbaceous", 50: "developed", 60: "other", 80: "water"}
N = 255


def raster_ref(path, **extra):
    return {"kind": "raster", "path": str(path), "remap": WC, "nodata": [0], "adapters": ["lulc_nyc"], **extra}


def test_aligned_raster_is_remapped_pixel_for_pixel(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    rng = np.random.default_rng(0)
    m = 20  # a 20 px margin around the area
    codes = rng.choice(np.array([0, 10, 20, 30, 50, 60, 80], dtype=np.uint8), (area.height_px + 2 * m, area.width_px + 2 * m))
    tr = area.transform @ Affine.translation(-m, -m)
    cfg = make_config(tmp_path, {"wc": raster_ref(write_raster(tmp_path / "wc.tif", codes, tr, "EPSG:32618", nodata=None))})
    got = to_adapter_classes(load_reference("wc", cfg, area), LULC)
    lut = np.full(256, N, dtype=np.uint8)
    for code, cls in WC.items():
        lut[code] = LULC.index(cls)
    assert (got == lut[codes[m:-m, m:-m]]).all()  # 0 is listed nodata -> 255
    assert (got == N).sum() == (codes[m:-m, m:-m] == 0).sum() > 0


def test_finer_raster_is_resampled_by_mode(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    f = 5  # 2 m cells: 5 x 5 per 10 m pixel
    codes = np.full((area.height_px * f, area.width_px * f), 10, dtype=np.uint8)  # forest everywhere
    block = np.full((f, f), 10, dtype=np.uint8)
    block.flat[:13] = 50  # pixel (0, 0): 13 developed cells of 25 -> developed
    codes[:f, :f] = block
    block = np.full((f, f), 10, dtype=np.uint8)
    block.flat[:12] = 50  # pixel (0, 1): 12 of 25 -> stays forest
    codes[:f, f:2 * f] = block
    codes[f * 7:f * 8, f * 9:f * 10] = 80  # pixel (7, 9): all water
    tr = area.transform @ Affine.scale(1 / f)
    cfg = make_config(tmp_path, {"wc": raster_ref(write_raster(tmp_path / "fine.tif", codes, tr, "EPSG:32618"))})
    got = to_adapter_classes(load_reference("wc", cfg, area), LULC)
    assert got[0, 0] == LULC.index("developed") and got[0, 1] == LULC.index("forest")
    assert got[7, 9] == LULC.index("water")
    assert (got == LULC.index("forest")).sum() == got.size - 2


def test_geographic_raster_is_reprojected(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    to_ll = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    minx, miny, maxx, maxy = area.bounds
    lon0, lat0 = to_ll.transform(minx - 500, maxy + 500)
    lon1, lat1 = to_ll.transform(maxx + 500, miny - 500)
    split_lon = to_ll.transform((minx + maxx) / 2, (miny + maxy) / 2)[0]
    res = 0.00005  # ~4-5 m
    w, h = int((lon1 - lon0) / res), int((lat0 - lat1) / res)
    lons = lon0 + res * (np.arange(w) + 0.5)
    codes = np.where(lons < split_lon, 80, 50).astype(np.uint8)[None].repeat(h, axis=0)
    path = write_raster(tmp_path / "ll.tif", codes, Affine(res, 0, lon0, 0, -res, lat0), "EPSG:4326", nodata=0)
    cfg = make_config(tmp_path, {"wc": raster_ref(path)})
    got = to_adapter_classes(load_reference("wc", cfg, area), LULC)
    y, x = area.coords()
    xx, yy = np.meshgrid(x, y)
    lon_c = np.asarray(to_ll.transform(xx, yy)[0])
    far = np.abs(lon_c - split_lon) > 0.0003  # pixel centres > ~25 m from the dividing meridian
    want = np.where(lon_c < split_lon, LULC.index("water"), LULC.index("developed"))
    assert far.mean() > 0.9 and (got[far] == want[far]).all()
    assert (got != N).all()


def test_remap_missing_a_code_names_it_with_its_pixel_count(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    codes = np.full((area.height_px, area.width_px), 50, dtype=np.uint8)
    codes[100:103, 200:204] = 95  # 12 px of a code the remap lacks
    path = write_raster(tmp_path / "wc.tif", codes, area.transform, "EPSG:32618")
    cfg = make_config(tmp_path, {"wc": raster_ref(path)})
    with pytest.raises(EvaluateError, match=r"code 95 \(12 px\).*add '<code>: <class>' to the remap"):
        load_reference("wc", cfg, area)


def test_reference_outside_the_area_is_refused(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    codes = np.full((50, 50), 50, dtype=np.uint8)
    path = write_raster(tmp_path / "far.tif", codes, Affine(10, 0, 300_000, 0, -10, 4_400_000), "EPSG:32618")
    cfg = make_config(tmp_path, {"wc": raster_ref(path)})
    with pytest.raises(EvaluateError, match=r"far.tif\) does not overlap the evaluated area"):
        load_reference("wc", cfg, area)


def test_adapter_whose_classes_do_not_match_the_remap(tmp_path):
    cfg = make_config(tmp_path, {"wc": raster_ref(tmp_path / "x.tif")})
    with pytest.raises(EvaluateError, match=r"remaps to 5 class\(es\).*'buildings_nyc' has 2 classes"):
        check_adapter("wc", cfg.evaluate.references["wc"], "buildings_nyc", ["background", "building"])
    check_adapter("wc", cfg.evaluate.references["wc"], "lulc_nyc", LULC)  # same classes, any order: fine
    with pytest.raises(EvaluateError, match=r"\['herbaceous'\] are not among them"):
        check_adapter("wc", cfg.evaluate.references["wc"], "lulc_nyc", ["water", "developed", "forest", "grass", "other"])
    with pytest.raises(EvaluateError, match=r"has 6 classes"):
        check_adapter("wc", cfg.evaluate.references["wc"], "lulc_nyc", [*LULC, "snow"])


# ---- vectors ------------------------------------------------------------------------------------
def footprints(x0: float, y0: float) -> gpd.GeoDataFrame:
    """Hand-checkable footprints relative to the area's top-left corner (x0, y0); 10 m pixels."""
    geoms = [
        shapely.box(x0 + 3, y0 - 26, x0 + 26, y0 - 3),  # covers the centres of pixels rows 0-2 x cols 0-2
        shapely.box(x0 + 30, y0 - 10, x0 + 40, y0 - 5.6),  # 44 % of pixel (0, 3), centre (y0-5) outside
        shapely.box(x0 + 50, y0 - 10, x0 + 60, y0 - 4),  # 60 % of pixel (0, 5), centre inside
    ]
    return gpd.GeoDataFrame({"kind": ["bldg"] * 3, "bin": ["b1", "b2", "b3"]}, geometry=geoms, crs="EPSG:32618")


def vector_ref(path, **extra):
    return {"kind": "vector", "path": str(path), "class_attribute": "kind", "id_attribute": "bin",
            "remap": {"bldg": "building"}, "background_class": "background", "adapters": ["buildings_nyc"], **extra}


def test_footprints_by_pixel_centre_and_fraction_covered(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    x0, y0 = area.bounds[0], area.bounds[3]
    footprints(x0, y0).to_parquet(tmp_path / "fp.parquet")
    cfg = make_config(tmp_path, {"fp": vector_ref(tmp_path / "fp.parquet", fraction_threshold=0.5)})
    ref = load_reference("fp", cfg, area)
    got = to_adapter_classes(ref, ["background", "building"])
    expect = np.zeros((4, 7), dtype=np.uint8)
    expect[0:3, 0:3] = 1  # centres inside the 3..26 m box (pixel (0, 0) is only 49 % covered)
    expect[0, 5] = 1  # 60 % covered, centre inside
    assert (got[:4, :7] == expect).all() and got.sum() == 10
    frac = to_adapter_classes(ref, ["background", "building"], "fraction_classes")
    # fraction covered (the 3..26 m box covers 0.7, 1.0, 0.6 of the first three pixel rows/columns):
    #   row 0: 0.7*0.7=0.49, 1.0*0.7=0.70, 0.6*0.7=0.42, | (0, 3) 0.44 | (0, 5) 0.60
    #   row 1: 0.70, 1.00, 0.60;  row 2: 0.42, 0.60, 0.36   -> >= 0.5 is a building
    expect_f = np.zeros((4, 7), dtype=np.uint8)
    expect_f[0, 1] = expect_f[1, 0] = expect_f[1, 1] = expect_f[1, 2] = expect_f[2, 1] = expect_f[0, 5] = 1
    assert (frac[:4, :7] == expect_f).all() and frac.sum() == 6


def test_vector_in_another_crs_is_reprojected(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    fp = footprints(area.bounds[0], area.bounds[3])
    fp.to_crs("EPSG:4326").to_file(tmp_path / "fp.geojson")
    fp.to_crs("EPSG:2263").to_file(tmp_path / "fp.gpkg")
    fp.to_parquet(tmp_path / "fp.parquet")
    cfgs = {n: make_config(tmp_path, {"fp": vector_ref(tmp_path / n)}) for n in ("fp.parquet", "fp.geojson", "fp.gpkg")}
    maps = {n: load_reference("fp", c, area) for n, c in cfgs.items()}
    assert maps["fp.geojson"].notes["source_crs"] == "EPSG:4326"
    assert (maps["fp.geojson"].classes == maps["fp.parquet"].classes).all()
    assert (maps["fp.gpkg"].classes == maps["fp.parquet"].classes).all()


def test_vector_without_crs_is_an_error(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    fp = footprints(area.bounds[0], area.bounds[3])
    fp.set_crs(None, allow_override=True).to_file(tmp_path / "nocrs.shp")  # no .prj (GeoJSON would imply WGS84)
    cfg = make_config(tmp_path, {"fp": vector_ref(tmp_path / "nocrs.shp")})
    with pytest.raises(EvaluateError, match="nocrs.shp has no CRS"):
        load_reference("fp", cfg, area)


def test_invalid_geometries_are_repaired_or_refused(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    x0, y0 = area.bounds[0], area.bounds[3]
    fp = footprints(x0, y0)
    bowtie = shapely.Polygon([(x0 + 100, y0 - 100), (x0 + 200, y0 - 200), (x0 + 200, y0 - 100), (x0 + 100, y0 - 200)])
    fp = gpd.GeoDataFrame({"kind": [*fp["kind"], "bldg"], "bin": [*fp["bin"], "b7"]},
                          geometry=[*fp.geometry, bowtie], crs=fp.crs)
    assert not bowtie.is_valid
    fp.to_parquet(tmp_path / "bad.parquet")
    cfg = make_config(tmp_path, {"fp": vector_ref(tmp_path / "bad.parquet")})
    ref = load_reference("fp", cfg, area)
    assert ref.notes["repaired_feature_ids"] == ["b7"]
    got = to_adapter_classes(ref, ["background", "building"])
    # the repaired bowtie is a west and an east triangle meeting at (x0+150, y0-150): both are rasterized
    # (pixel centres (115, -155) and (185, -155) inside), the gap above the crossing (155, -115) is not
    assert got[15, 11] == 1 and got[15, 18] == 1 and got[11, 15] == 0
    cfg = make_config(tmp_path, {"fp": vector_ref(tmp_path / "bad.parquet", invalid_geometry="refuse")})
    with pytest.raises(EvaluateError, match=r"1 invalid geometry in .*bad.parquet \(features \['b7'\]\)"):
        load_reference("fp", cfg, area)


def test_vector_code_missing_from_the_remap(tmp_path):
    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    fp = footprints(area.bounds[0], area.bounds[3])
    fp.loc[1, "kind"] = "garage"
    fp.to_parquet(tmp_path / "fp.parquet")
    cfg = make_config(tmp_path, {"fp": vector_ref(tmp_path / "fp.parquet")})
    with pytest.raises(EvaluateError, match=r"code garage \(1 features\)"):
        load_reference("fp", cfg, area)


def test_stac_api_reference_like_worldcover_on_planetary_computer(tmp_path):
    """The production path (a STAC API collection, asset 'map', WorldCover codes in EPSG:4326) against a
    real STAC API on 127.0.0.1 serving a seeded tile: same pixels as reading the file directly."""
    import datetime as dt

    from catalogs.static import item_from_files
    from tests.stac_server import serve_items

    cfg = make_config(tmp_path, {})
    area = area_of(cfg)
    to_ll = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(area.bounds[0] - 300, area.bounds[3] + 300)
    res = 1 / 12000  # WorldCover's 8.33e-5 degrees
    rng = np.random.default_rng(5)
    codes = np.kron(rng.choice(np.array([10, 30, 50, 60, 80, 0], dtype=np.uint8), (40, 80)), np.ones((8, 8), np.uint8))
    tif = write_raster(tmp_path / "ESA_WorldCover_10m_2021_v200_test_Map.tif", codes,
                       Affine(res, 0, lon0, 0, -res, lat0), "EPSG:4326", nodata=0)
    item = item_from_files("ESA_WorldCover_10m_2021_v200_test", "esa-worldcover",
                           dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc), {"map": tif})
    with serve_items([item], tmp_path) as url:
        stac = {"kind": "stac", "collection": "esa-worldcover", "asset": "map", "stac_url": url,
                "start": "2021-01-01", "end": "2022-01-01", "remap": WC, "nodata": [0], "adapters": ["lulc_nyc"]}
        cfg = make_config(tmp_path, {"wc": stac, "file": raster_ref(tif)})  # demo catalog: signing none
        got = load_reference("wc", cfg, area)
        assert got.identity == {"kind": "stac", "collection": "esa-worldcover", "asset": "map",
                                "items": ["ESA_WorldCover_10m_2021_v200_test"]}
        direct = load_reference("file", cfg, area)
        assert (got.classes == direct.classes).all() and (got.classes != N).mean() > 0.7
        cfg = make_config(tmp_path, {"wc": {**stac, "start": "2030-01-01", "end": "2031-01-01"}})
        with pytest.raises(EvaluateError, match="no items from 2030-01-01 to 2031-01-01.*does not overlap"):
            load_reference("wc", cfg, area)
