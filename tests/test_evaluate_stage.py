"""The evaluate stage end to end on small published prediction stores (real layout): outputs, keys,
status, probes, the sweep, and the embedded city's truth through the STAC path."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.features import geometry_mask
from sklearn.metrics import confusion_matrix

from nyceo.boundaries import load_boroughs
from nyceo.config import load_config
from nyceo.evaluate.contract import STAGE, run_evaluate
from nyceo.evaluate.stage import eval_dir
from tests.evaluate_fixtures import (
    CHIPS, area_of, make_config, publish_pred, seeded_classes, write_probes, write_raster,
)

MONTH = "2024-07"
CODES = [80, 50, 10, 30, 60]  # WorldCover code of each lulc class
WC = {80: "water", 50: "developed", 10: "forest", 30: "herbaceous", 60: "other", 40: "herbaceous"}


@pytest.fixture()
def world(tmp_path):
    """Truth raster, footprints, probes and published lulc_nyc / buildings_nyc stores."""
    cfg0 = make_config(tmp_path, {})
    area = area_of(cfg0)
    truth = seeded_classes(area, 5, seed=7)
    write_raster(tmp_path / "wc.tif", np.array(CODES, dtype=np.uint8)[truth], area.transform, "EPSG:32618")
    x0, y0 = area.bounds[0], area.bounds[3]
    boxes = [shapely.box(x0 + 1000 + 200 * i, y0 - 1200, x0 + 1100 + 200 * i, y0 - 1100) for i in range(5)]
    gpd.GeoDataFrame({"code": [1] * 5}, geometry=boxes, crs="EPSG:32618").to_parquet(tmp_path / "fp.parquet")
    centre = (x0 + 1120, y0 - 1120)  # centre of the west chip, as lon/lat for the probe
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(*centre)
    write_probes(tmp_path / "probes.yaml", [
        {"name": "green square", "point_lonlat": [lon, lat], "radius_m": 100,
         "rule": {"classes": ["forest"], "min_share": 0.9}},
        {"name": "wet square", "point_lonlat": [lon, lat], "radius_m": 100,
         "rule": {"classes": ["water"], "min_share": 0.5}},
        {"name": "Staten Island Greenbelt", "point_lonlat": [-74.137, 40.589], "radius_m": 800,
         "rule": {"classes": ["forest"], "min_share": 0.5}},
        {"name": "few buildings", "point_lonlat": [lon, lat], "radius_m": 100,
         "rule": {"classes": ["building"], "max_share": 0.05}},
    ])
    refs = {
        "wc": {"kind": "raster", "path": str(tmp_path / "wc.tif"), "remap": WC, "adapters": ["lulc_nyc"]},
        "fp": {"kind": "vector", "path": str(tmp_path / "fp.parquet"), "class_attribute": "code",
               "remap": {1: "building"}, "background_class": "background", "fraction_threshold": 0.5,
               "adapters": ["buildings_nyc"]},
    }
    cfg = make_config(tmp_path, refs, probes_file=str(tmp_path / "probes.yaml"),
                      sweep_classes={"buildings_nyc": "building"})
    pred = truth.copy()
    pred[:16, :224] = 4  # a strip of errors: everything 'other'
    pred[200:, 224:] = 255  # map nodata in the east chip
    y, x = area.coords()
    xx, yy = np.meshgrid(x, y)
    near = (np.abs(xx - centre[0]) < 150) & (np.abs(yy - centre[1]) < 150)
    pred[near] = 2  # forest around the probe point
    publish_pred(cfg, MONTH, "lulc_nyc", pred)
    inside = geometry_mask(boxes, out_shape=truth.shape, transform=area.transform, invert=True)
    band = geometry_mask([b.buffer(40) for b in boxes], out_shape=truth.shape, transform=area.transform, invert=True)
    p_building = np.where(inside, 178, np.where(band, 102, 25)).astype(np.uint8)  # 0.70 / 0.40 / 0.10
    prob = np.stack([254 - p_building, p_building]).astype(np.uint8)
    publish_pred(cfg, MONTH, "buildings_nyc", (p_building >= 127).astype(np.uint8), prob)
    return cfg, area, truth, pred, inside


def test_stage_writes_every_output_with_figures_from_the_stores(world):
    cfg, area, truth, pred, inside = world
    result = STAGE.run(cfg, MONTH)
    heads = {r["adapter"]: r for r in result["results"]}
    assert set(heads) == {"lulc_nyc", "buildings_nyc"} and {r["state"] for r in heads.values()} == {"done"}
    out = eval_dir(cfg, MONTH, "lulc_nyc", "wc")
    doc = json.loads(open(f"{out}/metrics.json").read())
    valid = pred != 255
    want = confusion_matrix(truth[valid], pred[valid], labels=range(5))
    assert doc["city"]["confusion"] == want.tolist()
    assert doc["city"]["map_nodata_px"] == 24 * 224 and doc["city"]["reference_nodata_px"] == 0
    assert doc["city"]["overall_accuracy"] == pytest.approx(np.trace(want) / want.sum())
    assert heads["lulc_nyc"]["miou"] == doc["city"]["miou"] and doc["city"]["miou_classes"] == 5
    # borough: pixels whose centre is in Manhattan (the chips also hold Hudson water and New Jersey)
    man = load_boroughs(cfg.grid.crs).query("BoroName == 'Manhattan'").geometry
    in_man = geometry_mask(man, out_shape=truth.shape, transform=area.transform, invert=True)
    assert list(doc["boroughs"]) == ["Manhattan"]
    assert doc["boroughs"]["Manhattan"]["evaluated_px"] == int((in_man & valid).sum()) < doc["city"]["evaluated_px"]
    # provenance and identity
    assert doc["key"] and doc["pred_key"] == "ab" * 32 and doc["reference"]["identity"]["kind"] == "raster"
    assert doc["adapter_sha256"] == {"adapter_model.safetensors": "0" * 64} and doc["config_hash"] == cfg.config_hash()
    # probes: forest square passes, water fails, Staten Island is outside the evaluated chips
    probes = {p["probe"]: p for p in doc["probes"]}
    assert set(probes) == {"green square", "wet square", "Staten Island Greenbelt"}  # 'building' not a lulc class
    assert probes["green square"]["state"] == "pass" and probes["green square"]["share"] == 1.0
    assert probes["wet square"]["state"] == "fail" and probes["wet square"]["share"] == 0.0
    assert probes["Staten Island Greenbelt"]["state"] == "no_data"
    assert probes["green square"]["reference_share"] < 0.9  # the reference (random blocks) is not all forest
    # per-chip diagnostics
    chips = gpd.read_parquet(f"{out}/chips.parquet")
    assert sorted(chips["chip_id"]) == CHIPS and chips.crs.to_epsg() == 32618
    west = chips.set_index("chip_id").loc[CHIPS[0]]
    ys, xs = area.chip_slices(224, 261)
    cw = confusion_matrix(truth[ys, xs].ravel(), pred[ys, xs].ravel(), labels=range(5))
    assert west["iou_other"] == pytest.approx(cw[4, 4] / (cw[4].sum() + cw[:, 4].sum() - cw[4, 4]))
    assert west["mean_confidence"] == pytest.approx(1.0)  # one-hot probabilities
    for name in ("metrics.md", "confusion.png", "probes.csv"):
        assert open(f"{out}/{name}", "rb").read(4)


def test_sweep_suggests_but_never_applies(world):
    cfg, area, truth, pred, inside = world
    run_evaluate(cfg, MONTH, adapters=["buildings_nyc"])
    out = eval_dir(cfg, MONTH, "buildings_nyc", "fp")
    doc = json.loads(open(f"{out}/metrics.json").read())
    rows = {r["threshold"]: r for r in doc["sweep"]["rows"]}
    # stored p = 178/254 (0.70) on footprints, 102/254 (0.40) on a 40 m band, 25/254 (0.098) elsewhere:
    # t = 0.05 all positive, 0.10..0.40 footprints + band, 0.45..0.70 exactly the footprints, >= 0.75 nothing
    n_in, n_all = int(inside.sum()), inside.size
    assert rows[0.05]["tp_px"] == n_in and rows[0.05]["fp_px"] == n_all - n_in
    assert rows[0.1]["fp_px"] == rows[0.4]["fp_px"] > 0 and rows[0.1]["tp_px"] == n_in
    assert rows[0.45]["iou"] == 1.0 and rows[0.7]["iou"] == 1.0 and rows[0.75]["tp_px"] == 0
    assert rows[0.4]["precision"] < 1.0 and rows[0.4]["recall"] == 1.0
    s = doc["sweep"]["suggested_operating_point"]
    assert s["threshold"] == 0.45 and s["applied"] is False
    assert doc["sweep"]["configured_operating_points"] == {"default": 0.5, "high_precision": 0.6}
    assert cfg.infer.adapters["buildings_nyc"].operating_points == {"default": 0.5, "high_precision": 0.6}
    assert doc["fraction_covered"]["threshold"] == 0.5 and doc["city"]["classes"]["building"]["iou"] == 1.0
    assert {p["probe"] for p in doc["probes"]} == {"few buildings"}
    assert open(f"{out}/sweep.csv").read().startswith("threshold,tp_px")
    assert open(f"{out}/sweep.png", "rb").read(4) == b"\x89PNG"


def test_keys_cache_and_status(world, tmp_path):
    cfg, *_ = world
    first = STAGE.run(cfg, MONTH)
    assert {r["state"] for r in first["results"]} == {"done"}
    out = eval_dir(cfg, MONTH, "lulc_nyc", "wc")
    key = json.loads(open(f"{out}/metrics.json").read())["key"]
    again = STAGE.run(cfg, MONTH)
    assert {r["state"] for r in again["results"]} == {"cached"}  # same key: nothing rewritten
    # a changed remap (another nodata code) changes that pair's key: re-evaluated, the other pair reused
    raw = cfg.model_dump(mode="json")
    raw["evaluate"]["references"]["wc"]["nodata"] = ["40"]
    from nyceo.config import PipelineConfig

    cfg2 = PipelineConfig.model_validate(raw)
    res = {r["adapter"]: r["state"] for r in STAGE.run(cfg2, MONTH)["results"]}
    assert res == {"lulc_nyc": "done", "buildings_nyc": "cached"}
    assert json.loads(open(f"{out}/metrics.json").read())["key"] != key
    # these stores were not made by infer from a stack of this configuration: infer is not current,
    # so the stage is blocked (as mosaic) and has no inputs key; the status says why
    st = STAGE.status(cfg2, MONTH)
    assert st.state == "blocked" and "infer is not current for ['buildings_nyc', 'lulc_nyc']" in st.reason
    assert STAGE.inputs_key(cfg2, MONTH) is None
    # an evaluated adapter without a published store is reported blocked by run (not raised)
    raw["evaluate"]["references"]["wc"]["adapters"] = ["lulc_nyc", "tim_nyc"]
    res = {r["adapter"]: r for r in STAGE.run(PipelineConfig.model_validate(raw), MONTH)["results"]}
    assert res["tim_nyc"]["state"] == "blocked" and "run `nyceo infer` first" in res["tim_nyc"]["reason"]


def test_no_reference_means_skipped(tmp_path):
    cfg = make_config(tmp_path, {})
    assert STAGE.enabled(cfg) == "no reference configured (evaluate.references is empty)"
    assert STAGE.status(cfg, MONTH).state == "skipped" and STAGE.run(cfg, MONTH)["status"] == "skipped"


def test_embedded_truth_through_the_stac_path(tmp_path):
    """configs/demo.yaml's references: the embedded city's truth collection, found by STAC search."""
    import rasterio

    from benchmarks.rerun_bench import TINY
    from catalogs.embedded import EmbeddedCatalog
    from nyceo.grid import AreaGrid, Lattice
    from tests.conftest import write_config

    cfg = load_config(write_config(tmp_path, **{k: dict(v) for k, v in TINY.items()}))
    assert set(cfg.evaluate.references) == {"embedded_landcover", "embedded_buildings"}
    area = AreaGrid(231, 253, 2, 2, Lattice.from_config(cfg.grid))  # the four TINY chips
    truth = EmbeddedCatalog.from_config(cfg.catalog).truth_paths()
    crops = {}
    for name, path in truth.items():
        with rasterio.open(path) as src:
            win = rasterio.windows.from_bounds(*area.bounds, transform=src.transform)
            crops[name] = src.read(1, window=win)
    lulc = crops["landcover"].copy()
    lulc[:, :10] = 255  # map nodata
    publish_pred(cfg, MONTH, "lulc_nyc", lulc, area=area)
    publish_pred(cfg, MONTH, "buildings_nyc", 1 - crops["buildings"], area=area)  # every pixel wrong
    res = {r["adapter"]: r for r in run_evaluate(cfg, MONTH, adapters=["lulc_nyc", "buildings_nyc"])["results"]}
    assert res["lulc_nyc"]["overall_accuracy"] == 1.0 and res["lulc_nyc"]["miou"] == 1.0
    assert res["buildings_nyc"]["overall_accuracy"] == 0.0
    doc = json.loads(open(f"{eval_dir(cfg, MONTH, 'lulc_nyc', 'embedded_landcover')}/metrics.json").read())
    assert doc["reference"]["identity"] == {"kind": "stac", "collection": "nyceo-embedded-truth",
                                            "asset": "landcover", "items": ["embedded-truth-s20240701"]}
    assert doc["city"]["map_nodata_px"] == 10 * area.height_px
    # r0232_c0254 lies wholly in Staten Island (its counts are reused), the others partly (split by pixel centre)
    si = load_boroughs(cfg.grid.crs).query("BoroName == 'Staten Island'").geometry
    in_si = geometry_mask(si, out_shape=lulc.shape, transform=area.transform, invert=True)
    assert in_si[224:, 224:].all() and not in_si[:224, :224].all()
    assert list(doc["boroughs"]) == ["Staten Island"]
    assert doc["boroughs"]["Staten Island"]["evaluated_px"] == int((in_si & (lulc != 255)).sum())
    # the demo probes are evaluated (Staten Island Greenbelt lies outside these chips: no_data)
    assert {p["probe"]: p["state"] for p in doc["probes"]}["Staten Island Greenbelt"] == "no_data"


def test_cli(world, tmp_path):
    from typer.testing import CliRunner

    from nyceo.cli import app

    cfg_path = str(tmp_path / "config.yaml")  # written by the fixture
    out = CliRunner().invoke(app, ["evaluate", "--month", MONTH, "--adapter", "lulc_nyc", "-c", cfg_path])
    assert out.exit_code == 0, out.output
    assert "lulc_nyc vs wc: done: mIoU" in out.output and "buildings_nyc" not in out.output
    out = CliRunner().invoke(app, ["evaluate", "--month", MONTH, "--reference", "nope", "-c", cfg_path])
    assert out.exit_code == 1 and "unknown reference(s) ['nope']" in out.output
    out = CliRunner().invoke(app, ["evaluate", "--month", MONTH, "--adapter", "tim_nyc", "-c", cfg_path])
    assert out.exit_code == 1 and "adapter(s) ['tim_nyc'] have no reference" in out.output
