"""The change stage end to end on published synthetic prediction stores (EPSG:32618, uint8 255).

The noise floor is measured by the real split-timesteps path (engine + a stand-in model on a
seeded stack store); the stores of the compared months are written by hand (tests/change_fixtures).
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import rasterio
import zarr
from rio_cogeo.cogeo import cog_validate

from nyceo.change import codes, layout
from nyceo.change.contract import STAGE
from nyceo.change.null_model import measure_null
from nyceo.change.stage import run_change, valid_chips
from nyceo.change.pairs import store_info
from nyceo.config import load_config
from nyceo.infer.testing import BandStandIn, write_published_stack
from tests.change_fixtures import SHA, base_logits, plant, publish_store, realize, small_area
from tests.conftest import write_config
from tests.test_mosaic_helpers import BUILDINGS, LULC, adapter_cfg

M, PREV, NEXT, YEAR = "2024-07", "2024-06", "2024-08", "2023-07"
AREA = small_area()
SHAPE = (AREA.height_px, AREA.width_px)
PLANT = (slice(100, 180), slice(300, 420))  # inside Manhattan


def make_cfg(tmp_path, **change):
    ch = {"building_class": {"buildings_nyc": "building"}, "adapters": ["lulc_nyc", "buildings_nyc"],
          "noise": {"sample_fraction": 0.5, "min_chips": 2, "seed": 0}, **change}
    path = write_config(tmp_path, grid={"boroughs": ["Manhattan"]},
                        infer={"adapters": {"lulc_nyc": adapter_cfg(LULC), "buildings_nyc": adapter_cfg(BUILDINGS)}},
                        mosaic={"blocksize_px": 256, "quicklook_max_px": 256}, change=ch)
    return load_config(path)


def months(cfg, planted_in=(M, NEXT), which=(PREV, M, NEXT), seed=0):
    """Publish stores for ``which`` months; the planted block is there from the months in ``planted_in``."""
    for adapter, k, to in (("lulc_nyc", 5, 2), ("buildings_nyc", 2, 1)):
        base = base_logits(k, SHAPE, seed=seed + k)
        where = np.zeros(SHAPE, bool)
        where[PLANT] = True
        for i, month in enumerate(which):
            logits = plant(base, where, to, strength=8.0) if month in planted_in else base
            publish_store(cfg, month, adapter, AREA, realize(logits, seed + 10 * i + k, noise_sd=0.5),
                          tag=f"planted={month in planted_in}")


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("change")
    cfg = make_cfg(tmp)
    months(cfg, which=(PREV, M))
    write_published_stack(cfg, M, AREA, seed=3)
    runner = BandStandIn(n_classes=5, adapter_names=("lulc_nyc",))
    runner2 = BandStandIn(n_classes=2, adapter_names=("buildings_nyc",))
    out = {a: run_change(cfg, M, adapters=[a], runner=r) for a, r in (("lulc_nyc", runner), ("buildings_nyc", runner2))}
    return cfg, out


def _file(cfg, adapter, pair, name):
    return layout.out(cfg, layout.pair_rel(M, adapter, pair, name))


def test_pairs_done_or_skipped_with_typed_reasons(done):
    cfg, out = done
    for adapter in ("lulc_nyc", "buildings_nyc"):
        assert out[adapter]["adapters"][adapter]["mom"]["state"] == "done"
        yoy = out[adapter]["adapters"][adapter]["yoy"]
        assert yoy["state"] == "skipped" and yoy["reason"] == "predecessor_missing" and YEAR in yoy["detail"]
    rec = json.load(open(_file(cfg, "lulc_nyc", "mom", "record.json")))
    assert rec["previous_month"] == PREV and rec["provenance"]["adapter_sha256"] == SHA
    with rasterio.open(_file(cfg, "lulc_nyc", "mom", "manhattan_transition.tif")) as ds:
        assert rec["changed_px"]["manhattan"] == int((ds.read(1) < 25).sum()) > 0


def test_layers_are_cogs_with_codes_colour_tables_and_the_planted_change(done):
    cfg, _ = done
    for layer in layout.LAYERS:
        path = _file(cfg, "buildings_nyc", "mom", f"nyc_{layer}.tif")
        assert cog_validate(path)[0], path
        with rasterio.open(path) as ds:
            assert ds.crs.to_epsg() == 32618 and ds.nodata == 255 and ds.dtypes == ("uint8",)
            assert ds.tags()["NYCEO_INPUT_KEY"] == json.load(open(_file(cfg, "buildings_nyc", "mom", "record.json")))["key"]
    with rasterio.open(_file(cfg, "buildings_nyc", "mom", "nyc_building.tif")) as ds:
        b, t = ds.read(1), ds.transform
        assert ds.colormap(1)[codes.BUILDING_NEW][:3] == (227, 26, 28)
    x0, y0 = AREA.bounds[0], AREA.bounds[3]
    r0, c0 = round((y0 - t.f) / 10), round((t.c - x0) / 10)
    block = b[PLANT[0].start - r0: PLANT[0].stop - r0, PLANT[1].start - c0: PLANT[1].stop - c0]
    new = (block == codes.BUILDING_NEW)[block != 255].mean()
    assert new > 0.5  # pixels not already buildings in June became new buildings
    with rasterio.open(_file(cfg, "lulc_nyc", "mom", "nyc_transition.tif")) as ds:
        tr = ds.read(1)
        assert "developed -> forest" in json.loads(ds.tags(1)["CODES"]).values()
    plant_px = tr[PLANT[0].start - r0: PLANT[0].stop - r0, PLANT[1].start - c0: PLANT[1].stop - c0]
    assert ((plant_px % 5 == 2) & (plant_px < 25))[plant_px != 255].mean() > 0.5  # changes into forest
    assert os.path.getsize(_file(cfg, "lulc_nyc", "mom", "quicklook/nyc_transition.png")) > 1000


def test_stac_items_link_every_asset_and_the_root_catalog_lists_the_change_collection(done):
    import pystac

    cfg, _ = done
    root = os.path.dirname(layout.out(cfg, "catalog.json"))
    cat = json.load(open(os.path.join(root, "catalog.json")))
    assert {"rel": "child", "href": "./stac/change-buildings_nyc/collection.json", "type": "application/json"} in cat["links"]
    rel = f"stac/change-buildings_nyc/{M}/change-buildings_nyc_mom_{M}_manhattan.json"
    item = pystac.Item.from_file(os.path.join(root, rel))
    assert item.properties["nyceo:previous_month"] == PREV and item.collection_id == "change-buildings_nyc"
    assert {"transition", "gain", "loss", "confidence", "building", "building_dp", "persistence", "quicklook",
            "areas_csv", "noise_floor"} <= set(item.assets)
    for asset in item.assets.values():
        assert os.path.isfile(os.path.normpath(os.path.join(root, os.path.dirname(rel), asset.href))), asset.href
    assert not os.path.exists(os.path.join(root, "stac/change-lulc_nyc/2024-07/change-lulc_nyc_yoy_2024-07_nyc.json"))


def test_change_areas_add_up_to_the_published_transition_pixels(done):
    cfg, _ = done
    rows = list(csv.DictReader(open(_file(cfg, "lulc_nyc", "mom", "areas.csv"))))
    for area in ("manhattan", "nyc"):
        with rasterio.open(_file(cfg, "lulc_nyc", "mom", f"{area}_transition.tif")) as ds:
            counts = np.bincount(ds.read(1).ravel(), minlength=256)
        mine = [r for r in rows if r["area"] == area]
        for r in mine:
            if r["kind"] in ("transition", "no_change", "uncertain"):
                assert int(r["pixels"]) == counts[int(r["code"])]
                assert float(r["area_km2"]) == pytest.approx(counts[int(r["code"])] * 1e-4, abs=1e-6)
        parts = sum(int(r["pixels"]) for r in mine if r["kind"] in ("transition", "no_change", "uncertain"))
        assert parts == counts[:255].sum() == int(next(r for r in mine if r["kind"] == "valid")["pixels"])
        assert all(r["expected_false_km2"] != "" for r in mine if r["kind"] == "transition")


def test_noise_floor_is_recorded_with_thresholds_and_the_stage_is_current_and_idempotent(done):
    cfg, _ = done
    nf = json.load(open(layout.out(cfg, layout.noise_rel(M, "lulc_nyc"))))
    assert nf["method"] == "split_timesteps" and nf["sample"]["n_chips"] >= 2
    assert len(nf["thresholds_u8"]) == 5 and set(nf["areas"]) == {"nyc", "manhattan"}
    assert len(nf["areas"]["nyc"]["classes"]["water"]["hist_abs_dp_u8"]) == 255
    st = STAGE.status(cfg, M)
    assert st.state == "current" and st.key == STAGE.inputs_key(cfg, M) and st.done == st.total == 4
    rec_path = _file(cfg, "lulc_nyc", "mom", "record.json")
    before = os.stat(rec_path).st_mtime_ns
    again = run_change(cfg, M, adapters=["lulc_nyc"])  # no runner needed: everything is current
    assert again["adapters"]["lulc_nyc"]["mom"]["cached"] and os.stat(rec_path).st_mtime_ns == before
    other = cfg.model_copy(update={"change": cfg.change.model_copy(update={"false_alarm_rate": 0.05})})
    assert STAGE.status(other, M).state == "stale"


def test_persistence_provisional_then_confirmed_or_dropped_when_the_next_month_arrives(tmp_path):
    cfg = make_cfg(tmp_path, adapters=["buildings_nyc"], pairs=["mom"])
    months(cfg, which=(PREV, M))
    write_published_stack(cfg, M, AREA, seed=3)
    run_change(cfg, M, runner=BandStandIn(n_classes=2, adapter_names=("buildings_nyc",)))
    pj = _file(cfg, "buildings_nyc", "mom", "persistence.json")
    first = json.load(open(pj))
    assert first["pixels"]["nyc"]["confirmed"] == 0 and first["pixels"]["nyc"]["provisional"] > 1000
    # August keeps the planted buildings: July's change becomes confirmed (refreshed by August's run)
    months(cfg, which=(NEXT,), planted_in=(NEXT,), seed=0)
    write_published_stack(cfg, NEXT, AREA, seed=4)
    run_change(cfg, NEXT, runner=BandStandIn(n_classes=2, adapter_names=("buildings_nyc",)))
    second = json.load(open(pj))
    assert second["key"] != first["key"] and second["neighbours"]["after"] == [NEXT]
    with rasterio.open(_file(cfg, "buildings_nyc", "mom", "nyc_persistence.tif")) as ds:
        p = ds.read(1)
    with rasterio.open(_file(cfg, "buildings_nyc", "mom", "nyc_building.tif")) as ds:
        new = ds.read(1) == codes.BUILDING_NEW
    assert (p[new] == codes.PERSIST_CONFIRMED).mean() > 0.9
    # August reverts (buildings gone again): July's new buildings are dropped
    months(cfg, which=(NEXT,), planted_in=(), seed=0)
    run_change(cfg, NEXT, runner=BandStandIn(n_classes=2, adapter_names=("buildings_nyc",)))
    with rasterio.open(_file(cfg, "buildings_nyc", "mom", "nyc_persistence.tif")) as ds:
        p = ds.read(1)
    assert (p[new] == codes.PERSIST_DROPPED).mean() > 0.9


def test_skip_reasons_for_other_adapter_files_and_other_grid(tmp_path):
    cfg = make_cfg(tmp_path, adapters=["lulc_nyc"])
    lay = realize(base_logits(5, SHAPE, 1), 2)
    publish_store(cfg, M, "lulc_nyc", AREA, lay)
    publish_store(cfg, PREV, "lulc_nyc", AREA, lay, sha={"adapter_model.safetensors": "c" * 64})
    other = small_area(rows=1, cols=3)
    small = realize(base_logits(5, (other.height_px, other.width_px), 1), 2)
    publish_store(cfg, YEAR, "lulc_nyc", other, small)
    out = run_change(cfg, M)["adapters"]["lulc_nyc"]
    assert out["mom"]["reason"] == "other_adapter_files" and out["yoy"]["reason"] == "other_grid"
    st = STAGE.status(cfg, M)  # finished: every pair has its typed skip for this key
    assert st.state == "current" and st.detail["lulc_nyc/mom"]["reason"] == "other_adapter_files"
    assert "lulc_nyc/yoy: other_grid" in st.reason and st.detail["pairs_skipped"] == 2
    again = run_change(cfg, M)
    assert again["status"] == "done" and again["cached"] and "predecessor" not in again["reason"]
    assert not os.path.exists(layout.out(cfg, layout.noise_rel(M, "lulc_nyc")))  # nothing measured for skips


def test_blocked_without_the_months_own_store(tmp_path):
    cfg = make_cfg(tmp_path, adapters=["lulc_nyc"])
    st = STAGE.status(cfg, M)
    assert st.state == "blocked" and "lulc_nyc" in st.reason and STAGE.inputs_key(cfg, M) is None
    with pytest.raises(ValueError, match="nyceo infer --month 2024-07"):
        run_change(cfg, M)
    from typer.testing import CliRunner

    from nyceo.cli import app

    res = CliRunner().invoke(app, ["change", "--month", M, "-c", str(tmp_path / "config.yaml")])
    assert res.exit_code == 1 and "no published prediction store of adapter 'lulc_nyc'" in res.output


def test_null_of_identical_halves_is_exactly_zero(tmp_path):
    """Known answer: when timesteps {2,3} repeat {0,1}, both halves are the same input: no noise."""
    cfg = make_cfg(tmp_path, adapters=["lulc_nyc"])
    publish_store(cfg, M, "lulc_nyc", AREA, realize(base_logits(5, SHAPE, 1), 2))
    stack = write_published_stack(cfg, M, AREA, seed=5)
    g = zarr.open_group(stack, mode="r+")
    for v in ("s2", "s1", "s2_valid", "s1_valid"):
        g[v][2:4] = g[v][0:2]
    chips = valid_chips(cfg, store_info(cfg, M, "lulc_nyc"))
    assert len(chips) == 6
    sample = measure_null(cfg, M, "lulc_nyc", chips, BandStandIn(n_classes=5, adapter_names=("lulc_nyc",)))
    assert len(sample.chips) == 3 and sample.half_a.class_map.size == 3 * 224 * 224
    np.testing.assert_array_equal(sample.half_a.probability, sample.half_b.probability)
    # and differing halves give a non-zero null (the measurement is not trivially zero)
    write_published_stack(cfg, M, AREA, seed=5)
    noisy = measure_null(cfg, M, "lulc_nyc", chips, BandStandIn(n_classes=5, adapter_names=("lulc_nyc",)))
    assert (noisy.half_a.probability != noisy.half_b.probability).any()
