"""Mosaic COGs: validity, clipping, nodata, colour tables, overviews, pixel equality, provenance."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rio_cogeo.cogeo import cog_validate

from nyceo.mosaic import layout
from nyceo.mosaic.clip import configured_areas
from nyceo.mosaic.cog import INPUT_KEY_TAG, PROVENANCE_TAG, CogBand, hex_to_rgba, write_cog
from nyceo.mosaic.predstore import PredStoreError
from nyceo.mosaic.stage import mosaic_area, mosaic_month
from tests.test_mosaic_helpers import BUILDINGS, LULC, make_config, read_store, write_pred_store

MONTH = "2024-07"


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """Manhattan + Bronx, both adapters, mosaicked once for the module."""
    cfg = make_config(tmp_path_factory.mktemp("city"), ["Manhattan", "Bronx"])
    stores = {a: write_pred_store(cfg, MONTH, a, seed=i) for i, a in enumerate(["lulc_nyc", "buildings_nyc"])}
    results = mosaic_month(cfg, MONTH)
    return cfg, stores, results


def _path(cfg, adapter, area, layer="class"):
    return layout.out_path(cfg, layout.layer_rel(MONTH, adapter, area, layer))


def test_every_area_layer_is_a_valid_cog_with_tiles_overviews_and_compression(city):
    cfg, _, results = city
    assert {(r.adapter, r.area) for r in results} == {
        (a, s) for a in ("lulc_nyc", "buildings_nyc") for s in ("manhattan", "bronx", "nyc")}
    for r in results:
        assert not r.skipped
        layers = [k for k in r.files if k in layout.LAYERS]
        assert layers == (["class", "confidence", "probability"] if r.adapter == "buildings_nyc"
                          else ["class", "confidence"])
        for layer in layers:
            path = _path(cfg, r.adapter, r.area, layer)
            valid, errors, _ = cog_validate(path)
            assert valid, (path, errors)
            with rasterio.open(path) as ds:
                assert ds.crs.to_epsg() == 32618 and ds.dtypes == ("uint8",) and ds.nodata == 255
                assert ds.block_shapes == [(256, 256)] and ds.compression.name == "zstd"
                assert ds.overviews(1), "a COG larger than a tile needs overviews"


def _centres_inside(geom, transform: Affine, shape) -> np.ndarray:
    rows, cols = np.mgrid[0: shape[0], 0: shape[1]]
    x, y = transform @ (cols + 0.5, rows + 0.5)
    return shapely.contains_xy(geom, x, y)


@pytest.mark.parametrize("adapter,area", [("lulc_nyc", "manhattan"), ("buildings_nyc", "bronx")])
def test_pixels_inside_the_borough_equal_the_store_and_outside_are_nodata(city, adapter, area):
    cfg, stores, _ = city
    store = read_store(stores[adapter])
    x0, y0 = float(store.x[0]) - 5, float(store.y[0]) + 5
    geom = configured_areas(cfg)[area].geometry
    for layer, var in (("class", store.class_map), ("confidence", store.confidence)):
        with rasterio.open(_path(cfg, adapter, area, layer)) as ds:
            got, t = ds.read(1), ds.transform
        c0, r0 = round((t.c - x0) / 10), round((y0 - t.f) / 10)
        want = var.values[r0: r0 + got.shape[0], c0: c0 + got.shape[1]]
        inside = _centres_inside(geom, t, got.shape)
        assert inside.sum() > 100_000
        np.testing.assert_array_equal(got[inside], want[inside])
        assert (got[~inside] == 255).all()
        # the store has real data outside the borough: clipping removed it
        assert (want[~inside] != 255).sum() > 1000


def test_probability_layer_is_the_building_class_with_scale_metadata(city):
    cfg, stores, _ = city
    store = read_store(stores["buildings_nyc"])
    with rasterio.open(_path(cfg, "buildings_nyc", "nyc", "probability")) as ds:
        got, t = ds.read(1), ds.transform
        assert ds.scales == (pytest.approx(1 / 254),) and ds.offsets == (0.0,)
        assert "probability of building" in ds.descriptions[0]
        assert ds.tags(1)["CLASS"] == "building"
    c0, r0 = round((t.c - float(store.x[0]) + 5) / 10), round((float(store.y[0]) + 5 - t.f) / 10)
    window = np.s_[r0: r0 + got.shape[0], c0: c0 + got.shape[1]]
    want = store.probability.sel({"class": "building"}).values[window]
    other = store.probability.sel({"class": "background"}).values[window]
    inside = _centres_inside(configured_areas(cfg)["nyc"].geometry, t, got.shape)
    valid = got != 255
    assert valid.sum() > 100_000                                   # not an all-nodata layer
    np.testing.assert_array_equal(valid, inside & (want != 255))   # data wherever the store has it in the city
    np.testing.assert_array_equal(got[valid], want[valid])
    assert (got[valid] != other[valid]).mean() > 0.9               # the building class, not the background


def _placed(path: str, onto: Affine, shape: tuple[int, int]) -> np.ndarray:
    """A COG's pixels placed on the grid of ``onto``/``shape`` (same 10 m lattice), 255 elsewhere."""
    out = np.full(shape, 255, np.uint8)
    with rasterio.open(path) as ds:
        data, t = ds.read(1), ds.transform
    r0, c0 = round((onto.f - t.f) / 10), round((t.c - onto.c) / 10)
    out[r0: r0 + data.shape[0], c0: c0 + data.shape[1]] = data
    return out


def test_city_mask_is_the_union_of_the_borough_masks(city):
    cfg, _, _ = city
    with rasterio.open(_path(cfg, "lulc_nyc", "nyc")) as ds:
        nyc, t = ds.read(1), ds.transform
    boroughs = {a: _placed(_path(cfg, "lulc_nyc", a), t, nyc.shape) for a in ("manhattan", "bronx")}
    has = {a: b != 255 for a, b in boroughs.items()}
    assert min(m.sum() for m in has.values()) > 100_000
    assert not (has["manhattan"] & has["bronx"]).any()            # borough files do not overlap
    np.testing.assert_array_equal(nyc != 255, has["manhattan"] | has["bronx"])   # same pixels, not just counts
    for a, b in boroughs.items():
        np.testing.assert_array_equal(nyc[has[a]], b[has[a]])


def test_colour_table_category_names_descriptions_and_provenance(city):
    cfg, stores, results = city
    path = _path(cfg, "lulc_nyc", "manhattan")
    with rasterio.open(path) as ds:
        cmap = ds.colormap(1)
        for i, colour in enumerate(LULC["colors"]):
            assert cmap[i] == hex_to_rgba(colour)
        assert cmap[255][3] == 0
        assert json.loads(ds.tags(1)["CLASS_NAMES"]) == LULC["classes"]
        assert ds.descriptions == ("lulc_nyc class",)
        prov = json.loads(ds.tags()[PROVENANCE_TAG])
        key = ds.tags()[INPUT_KEY_TAG]
    assert prov["stage"] == "mosaic" and prov["area"] == "manhattan" and prov["input_key"] == key
    assert prov["pred_provenance"]["adapter"]["revision"] == "abc123"
    assert prov["config_hash"] == cfg.config_hash()
    sidecar = ET.parse(path + ".aux.xml").getroot()
    assert [c.text for c in sidecar.iter("Category")] == LULC["classes"]
    with rasterio.open(_path(cfg, "buildings_nyc", "bronx")) as ds:
        assert ds.colormap(1)[1] == hex_to_rgba(BUILDINGS["colors"][1])


def test_quicklook_and_thumbnail_sizes(city):
    cfg, _, results = city
    from PIL import Image

    r = next(r for r in results if r.area == "nyc")
    with Image.open(layout.out_path(cfg, r.files["quicklook"])) as im:
        assert max(im.size) == cfg.mosaic.quicklook_max_px
        assert len(set(im.convert("RGB").getdata())) > 5  # map + legend colours, not blank
    with Image.open(layout.out_path(cfg, r.files["thumbnail"])) as im:
        assert max(im.size) <= cfg.mosaic.thumbnail_max_px and im.mode == "RGBA"


def _grid_transform():
    return Affine(10, 0, 580_160, 0, -10, 4_527_040)


def test_class_overviews_use_mode_on_a_known_block_pattern(tmp_path):
    # Every 2x2 block holds three pixels of its class and one pixel of class 4: mode keeps the class.
    rows, cols = np.mgrid[0:512, 0:512]
    base = ((rows // 64 + cols // 64) % 4).astype(np.uint8)
    data = base.copy()
    data[::2, ::2] = 4
    data[:128, :128] = 255
    band = CogBand("class", "mode", colormap={i: (i * 40, 0, 0, 255) for i in range(5)})
    path = write_cog(data, _grid_transform(), "EPSG:32618", tmp_path / "c.tif", band, blocksize_px=128,
                     compression="DEFLATE")
    assert cog_validate(str(path))[0]
    with rasterio.open(path, overview_level=0) as ov:
        level1 = ov.read(1)
    assert level1.shape == (256, 256)
    np.testing.assert_array_equal(level1[64:, 64:], base[::2, ::2][64:, 64:])
    assert (level1[:64, :64] == 255).all()


def test_probability_overviews_average_without_nodata_bleeding(tmp_path):
    data = np.full((512, 512), 40, np.uint8)
    data[1::2, 1::2] = 0          # blocks {40, 40, 40, 0} -> average 30
    data[:256, ::2] = 255         # top half: left column of each block nodata -> {255, 40, 255, 0}
    band = CogBand("p", "average", scale=1 / 254)
    path = write_cog(data, _grid_transform(), "EPSG:32618", tmp_path / "p.tif", band, blocksize_px=128,
                     compression="ZSTD")
    with rasterio.open(path, overview_level=0) as ov:
        level1 = ov.read(1)
    assert (level1[128:, :] == 30).all()
    top = level1[:128, :]
    # valid {40, 0} -> 20; had nodata bled in, (255 + 40 + 255 + 0) / 4 = 137
    assert (top == 20).all(), np.unique(top)


def test_missing_store_and_class_mismatch_are_clear_errors(tmp_path):
    cfg = make_config(tmp_path, ["Manhattan"])
    with pytest.raises(PredStoreError, match="run `nyceo infer --month 2024-07 -a lulc_nyc"):
        mosaic_area(cfg, MONTH, "lulc_nyc", "manhattan")
    write_pred_store(cfg, MONTH, "lulc_nyc")
    other = make_config(tmp_path, ["Manhattan"], probability_classes={"lulc_nyc": "forest"})
    mosaic_area(other, MONTH, "lulc_nyc", "manhattan")
    bad = cfg.model_copy(update={"infer": cfg.infer.model_copy(update={"adapters": {
        "lulc_nyc": cfg.infer.adapters["lulc_nyc"].model_copy(update={"classes": ["a", "b", "c", "d", "e"]})}})})
    with pytest.raises(PredStoreError, match="not complete and current"):  # classes are in the pred key
        mosaic_area(bad, MONTH, "lulc_nyc", "manhattan")
    with pytest.raises(ValueError, match="not configured"):
        mosaic_area(cfg, MONTH, "lulc_nyc", "queens")
