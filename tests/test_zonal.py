"""Zonal engine: sums against raster totals, sub-pixel coverage, user layers in other CRSs, bad input,
the coverage cache, share intervals from an error matrix, and change areas."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely

from nyceo import versioned
from nyceo.boundaries import load_boroughs
from nyceo.zonal import stage
from nyceo.zonal.accuracy import ErrorMatrix, adjusted_shares, parse_error_matrix
from nyceo.zonal.coverage import RasterGrid, compute_coverage
from nyceo.zonal.engine import Compact, Groups, class_area_table
from nyceo.zonal.layers import LayerError, make_layer
from nyceo.zonal.outputs import read_manifest, read_table, zonal_dir
from tests.test_mosaic_helpers import LULC, seeded_prediction
from tests.zonal_helpers import MONTH, make_config, publish_pred, small_area

PX_KM2 = 1e-4  # one 10 m pixel


def _class_map(cfg, seed=1):
    area = small_area(cfg)
    cm, prob, _ = seeded_prediction(5, (area.height_px, area.width_px), seed)
    ys, xs = area.chip_slices(area.row0, area.col0)
    cm[ys, xs], prob[:, ys, xs] = 255, 255  # one chip never predicted
    return cm, prob


@pytest.fixture(scope="module")
def month_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("zonal")
    cfg0 = make_config(tmp, adapters=["lulc_nyc"], ndvi=False)
    box = shapely.box(*small_area(cfg0).bounds)
    gpd.GeoDataFrame({"id": ["grid"], "kind": ["whole"]}, geometry=[box], crs="EPSG:32618").to_file(tmp / "box.gpkg")
    cfg = make_config(tmp, adapters=["lulc_nyc"], ndvi=False,
                      layers=[{"name": "box", "path": str(tmp / "box.gpkg"), "id_column": "id", "category_column": "kind"}])
    cm, prob = _class_map(cfg)
    publish_pred(cfg, MONTH, "lulc_nyc", cm, prob)
    result = stage.run(cfg, MONTH)
    return cfg, cm, prob, result


def test_class_areas_per_borough_add_up_to_the_borough_area_on_the_grid(month_run):
    cfg, cm, _, result = month_run
    assert result["status"] == "done"
    table = read_table(cfg, MONTH, "lulc_nyc/borough.csv")
    grid_box = shapely.box(*small_area(cfg).bounds)
    boroughs = load_boroughs().set_index(load_boroughs()["BoroCode"].astype(str))
    classes = LULC["classes"]
    for _, row in table.iterrows():
        on_grid_km2 = shapely.intersection(boroughs.loc[str(row.zone_id)].geometry, grid_box).area / 1e6
        total = sum(row[f"{c}_km2"] for c in classes) + row["nodata_km2"]
        assert abs(total - on_grid_km2) <= PX_KM2, (row.zone_name, total, on_grid_km2)
        assert abs(sum(row[f"{c}_km2"] for c in classes) - row["mapped_km2"]) < 1e-6
    assert (table["zone_km2"] > 1).sum() == 3  # Manhattan, Bronx and Queens meet on this grid
    # a polygon covering the whole grid: class areas are exactly the raster's pixel counts
    box = read_table(cfg, MONTH, "lulc_nyc/box.csv").iloc[0]
    for k, c in enumerate(classes):
        assert box[f"{c}_km2"] == pytest.approx((cm == k).sum() * PX_KM2, rel=1e-6)
    assert box["nodata_km2"] == pytest.approx((cm == 255).sum() * PX_KM2, rel=1e-6)
    nta = read_table(cfg, MONTH, "lulc_nyc/nta.csv")
    assert len(nta) == 262 and nta["developed_km2"].sum() == pytest.approx(table["developed_km2"].sum(), rel=1e-3)


def test_outputs_carry_provenance_and_geometry(month_run):
    cfg, *_ = month_run
    gdf = gpd.read_parquet(f"{zonal_dir(cfg, MONTH)}/lulc_nyc/nta.parquet")
    assert gdf.crs.to_epsg() == 32618 and len(gdf) == 262
    row = gdf.iloc[0]
    assert row["month"] == MONTH and row["adapter"] == "lulc_nyc" and row["adapter_sha256"] == "ab" * 32
    assert row["config_hash"] == cfg.config_hash() and row["key"] == stage.inputs_key(cfg, MONTH)
    manifest = read_manifest(cfg, MONTH)
    assert manifest["key"] == versioned.published_key(zonal_dir(cfg, MONTH)) == row["key"]


def test_second_run_is_current_and_a_new_month_reuses_the_coverage_cache(month_run):
    cfg, cm, prob, _ = month_run
    assert stage.status(cfg, MONTH).state == "current"
    assert stage.run(cfg, MONTH)["status"] == "current"
    publish_pred(cfg, "2024-08", "lulc_nyc", cm, prob)
    hits = stage.run(cfg, "2024-08")["coverage_cache_hits"]
    assert {"borough", "nta", "box", "exposure_shoreline_300m_nta"} <= set(hits) and all(hits.values())


def _grid(n=4):
    return RasterGrid(rasterio.Affine(10, 0, 500000, 0, -10, 4500000), n, n, "EPSG:32618")


def _layer(geoms, crs="EPSG:32618", ids=None):
    ids = ids or [f"z{i}" for i in range(len(geoms))]
    return make_layer(gpd.GeoDataFrame({"id": ids}, geometry=geoms, crs=crs), "t", "test layer", "0", "EPSG:32618", "id")


def test_polygon_smaller_than_a_pixel_is_weighted_by_its_coverage():
    grid = _grid()
    cm = np.array([[0, 1, 2, 3]] * 4, dtype=np.uint8)
    x0, y0 = 500000, 4500000
    tiny = shapely.box(x0 + 2, y0 - 7, x0 + 6, y0 - 2)  # 4 x 5 m inside pixel (0, 0)
    straddle = shapely.box(x0 + 15, y0 - 25, x0 + 25, y0 - 15)  # 10 x 10 m over pixels of classes 1 and 2
    layer = _layer([tiny, straddle])
    compact = Compact.from_coverage(compute_coverage(grid, layer))
    t = class_area_table(compact, grid, cm, ["a", "b", "c", "d"], None, Groups((), ()))
    assert t.loc[0, "a_km2"] == pytest.approx(20e-6, rel=1e-5) and t.loc[0, "b_km2"] == 0
    assert t.loc[1, "b_km2"] == pytest.approx(50e-6, rel=1e-5) and t.loc[1, "c_km2"] == pytest.approx(50e-6, rel=1e-5)
    assert t.loc[1, "b_share"] == pytest.approx(0.5, rel=1e-5)


def test_user_layer_in_another_crs_gives_the_same_figures(tmp_path):
    grid = _grid(40)
    cm = (np.arange(1600).reshape(40, 40) % 3).astype(np.uint8)
    poly = shapely.Polygon([(500013, 4499987), (500301, 4499950), (500250, 4499700), (500040, 4499720)])
    ref = class_area_table(Compact.from_coverage(compute_coverage(grid, _layer([poly]))), grid, cm, list("abc"), None, Groups((), ()))
    for crs, suffix in (("EPSG:4326", ".geojson"), ("EPSG:2263", ".gpkg")):
        path = tmp_path / f"p{suffix}"
        gpd.GeoDataFrame({"id": ["p"]}, geometry=[poly], crs="EPSG:32618").to_crs(crs).to_file(path)
        layer = make_layer(gpd.read_file(path), "p", str(path), "0", "EPSG:32618", "id")
        t = class_area_table(Compact.from_coverage(compute_coverage(grid, layer)), grid, cm, list("abc"), None, Groups((), ()))
        np.testing.assert_allclose(t[["a_km2", "b_km2", "c_km2"]].to_numpy(), ref[["a_km2", "b_km2", "c_km2"]].to_numpy(), rtol=1e-4)


def test_user_layer_path_in_another_crs_through_the_stage(tmp_path):
    cfg0 = make_config(tmp_path, adapters=["lulc_nyc"], ndvi=False, ntas=False)
    box = shapely.box(*small_area(cfg0).bounds).buffer(-500)
    halves = [shapely.intersection(box, shapely.box(0, 0, box.centroid.x, 1e8)), shapely.intersection(box, shapely.box(box.centroid.x, 0, 1e9, 1e8))]
    gdf = gpd.GeoDataFrame({"sid": ["W", "E"], "sewer": ["combined", "separate"]}, geometry=halves, crs="EPSG:32618")
    gdf.to_crs("EPSG:2263").to_file(tmp_path / "sewersheds.shp")
    cfg = make_config(tmp_path, adapters=["lulc_nyc"], ndvi=False, ntas=False,
                      layers=[{"name": "sewersheds", "path": str(tmp_path / "sewersheds.shp"), "id_column": "sid",
                               "category_column": "sewer"}])
    publish_pred(cfg, MONTH, "lulc_nyc", seed=4)
    stage.run(cfg, MONTH)
    t = read_table(cfg, MONTH, "lulc_nyc/sewersheds.csv")
    assert list(t["zone_id"]) == ["W", "E"]
    np.testing.assert_allclose(t["zone_km2"], [h.area / 1e6 for h in halves], rtol=1e-5)
    by_cat = read_table(cfg, MONTH, "stormwater/lulc_nyc_by_category.csv")
    assert set(by_cat["category"]) == {"combined", "separate"}
    assert by_cat["impervious_km2"].sum() == pytest.approx(t["developed_km2"].sum())


def test_invalid_geometry_is_repaired_and_its_id_reported():
    bowtie = shapely.Polygon([(500000, 4499960), (500040, 4500000), (500040, 4499960), (500000, 4500000)])
    layer = _layer([shapely.box(500000, 4499960, 500010, 4499970), bowtie], ids=["ok", "bow"])
    assert layer.repaired_ids == ["bow"]
    assert layer.gdf.geometry.iloc[1].is_valid and layer.gdf.geometry.iloc[1].area == pytest.approx(800)
    with pytest.raises(LayerError, match=r"bow.*make_valid"):
        make_layer(gpd.GeoDataFrame({"id": ["bow"]}, geometry=[bowtie], crs="EPSG:32618"), "t", "test layer", "0",
                   "EPSG:32618", "id", refuse_invalid=True)


@pytest.mark.parametrize("case,match", [
    ("no_crs", r"has no CRS.*set_crs"),
    ("elsewhere", r"does not overlap the gridded city.*check its CRS"),
    ("duplicate", r"duplicate ids \['a'\].*dissolve"),
    ("no_category", r"no column 'sewer'.*category_column"),
    ("no_id", r"no column 'id'.*id_column"),
])
def test_bad_polygon_layers_are_named_with_the_fix(case, match):
    city = shapely.union_all(load_boroughs().geometry.values)
    inside = shapely.box(586000, 4513000, 587000, 4514000)
    gdf = gpd.GeoDataFrame({"id": ["a", "b"]}, geometry=[inside, inside.buffer(-100)], crs="EPSG:32618")
    kwargs = {}
    if case == "no_crs":
        gdf = gdf.set_crs(None, allow_override=True)
    elif case == "elsewhere":
        gdf = gpd.GeoDataFrame({"id": ["a"]}, geometry=[shapely.box(2.3, 48.8, 2.4, 48.9)], crs="EPSG:4326")
    elif case == "duplicate":
        gdf["id"] = ["a", "a"]
    elif case == "no_category":
        kwargs["category_col"] = "sewer"
    elif case == "no_id":
        gdf = gdf.rename(columns={"id": "ID"})
    with pytest.raises(LayerError, match=match):
        make_layer(gdf, "t", "zonal layer 't' (t.gpkg)", "0", "EPSG:32618", "id", city=city, **kwargs)


def test_share_intervals_from_an_error_matrix():
    # 2 classes, rows = map: map class 0 is right 90 of 100 samples, map class 1 right 40 of 50
    em = ErrorMatrix(("a", "b"), np.array([[90.0, 10.0], [10.0, 40.0]]), "test")
    est, lo, hi = adjusted_shares(em, np.array([[0.6, 0.4]]))
    assert est[0, 0] == pytest.approx(0.6 * 0.9 + 0.4 * 0.2)
    se = np.sqrt(0.36 * 0.9 * 0.1 / 99 + 0.16 * 0.2 * 0.8 / 49)
    assert hi[0, 0] - est[0, 0] == pytest.approx(1.959964 * se, rel=1e-5)
    # the reader: scikit-learn orientation (rows = reference) by default, transposed to rows = map
    parsed = parse_error_matrix({"classes": ["a", "b"], "confusion_matrix": [[90, 10], [10, 40]]}, "m.json")
    assert parsed.counts.tolist() == [[90, 10], [10, 40]]
    parsed = parse_error_matrix({"classes": ["a", "b"], "city": {"confusion": [[90, 10], [10, 40]]}}, "m.json")
    assert parsed.counts.tolist() == [[90, 10], [10, 40]]  # the evaluate stage's city matrix, rows = reference
    parsed = parse_error_matrix({"area_estimate": {"classes": ["a", "b"], "rows": "map",
                                                   "error_matrix_counts": [[1, 2], [3, 4]]}}, "m.json")
    assert parsed.counts.tolist() == [[1, 2], [3, 4]]
    assert parse_error_matrix({"classes": ["a"], "confusion_matrix": [[1, 2], [3, 4]]}, "m.json") is None


def test_stage_reads_the_evaluation_and_change_outputs_when_present(tmp_path):
    cfg = make_config(tmp_path, adapters=["lulc_nyc"], ndvi=False, ntas=False)
    cm, prob = _class_map(cfg, seed=5)
    publish_pred(cfg, MONTH, "lulc_nyc", cm, prob)
    key0 = stage.inputs_key(cfg, MONTH)
    stage.run(cfg, MONTH)  # published without evaluation or change: rebuilt below when they appear
    ev = tmp_path / "outputs" / MONTH / "eval" / "lulc_nyc" / "truth"  # the evaluate stage's layout
    ev.mkdir(parents=True)
    (ev / "metrics.json").write_text(json.dumps({"classes": LULC["classes"], "city": {"confusion": (np.eye(5) * 50 + 2).tolist()}}))
    area = small_area(cfg)
    codes = np.where(cm == 1, 0, 1).astype(np.uint8)
    ch = tmp_path / "outputs" / MONTH / "change" / "lulc_nyc" / "mom"
    ch.mkdir(parents=True)
    with rasterio.open(ch / "nyc_transition.tif", "w", driver="GTiff", width=area.width_px, height=area.height_px, count=1,
                       dtype="uint8", crs="EPSG:32618", transform=area.transform, nodata=255) as ds:
        ds.write(codes, 1)
        ds.update_tags(1, CODES=json.dumps({"0": "gain developed", "1": "no change"}))
    assert stage.inputs_key(cfg, MONTH) != key0
    stage.run(cfg, MONTH)
    assert sorted(p.name for p in (tmp_path / "outputs" / MONTH).glob("zonal@*")) == [f"zonal@{stage.inputs_key(cfg, MONTH)[:16]}"]
    t = read_table(cfg, MONTH, "lulc_nyc/borough.csv")
    assert {"developed_share_adj", "developed_share_lo", "developed_share_hi"} <= set(t.columns)
    assert (t["developed_share_lo"] <= t["developed_share_adj"]).all() and (t["developed_share_adj"] <= t["developed_share_hi"]).all()
    assert t["change_mom_gain_developed_km2"].to_numpy() == pytest.approx(t["developed_km2"].to_numpy(), rel=1e-5)
    assert pd.notna(t["change_mom_no_change_km2"]).all()
