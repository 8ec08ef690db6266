"""The embedded city: PC-like items and assets, determinism, content, idempotency, special months."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rio_cogeo.cogeo import cog_validate

from catalogs import open_catalog
from catalogs.embedded import EmbeddedCatalog, EmbeddedOptions
from catalogs.embedded.writer import MARKER
from nyceo.boundaries import load_boroughs
from nyceo.config import CatalogConfig

# Central Park, the Upper East/West Side and a stretch of the East River
BBOX = (-73.985, 40.765, -73.945, 40.795)
JULY = (dt.datetime(2024, 7, 1), dt.datetime(2024, 8, 1))
S2_10M, S2_20M, S2_60M = ("B02", "B03", "B04", "B08"), ("B05", "B06", "B07", "B8A", "B11", "B12", "SCL"), ("B01", "B09")


def _read(path: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(1), dict(crs=src.crs, res=src.res, dtype=src.dtypes[0], nodata=src.nodata,
                                 transform=src.transform, shape=src.shape)


@pytest.fixture(scope="session")
def city(tmp_path_factory) -> EmbeddedCatalog:
    opts = EmbeddedOptions(all_cloud_months=("2024-02",), sparse_radar_months=("2024-03",))
    return EmbeddedCatalog(tmp_path_factory.mktemp("embedded"), seed=7, bbox_lonlat=BBOX, options=opts)


@pytest.fixture(scope="session")
def july_s2(city):
    return city.search("sentinel-2-l2a", BBOX, *JULY)


def test_s2_items_look_like_planetary_computer(july_s2):
    assert 5 <= len(july_s2) <= 8
    for item in july_s2:
        assert set(item.assets) == {f"B{b:02d}" for b in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)} | {"B8A", "SCL"}
        assert item.properties["s2:processing_baseline"] == "05.10"
        assert item.properties["proj:epsg"] == 32618 and item.properties["s2:mgrs_tile"] == "18TWL"
        assert 0 <= item.properties["eo:cloud_cover"] <= 100
        assert item.collection_id == "sentinel-2-l2a"
    item = july_s2[0]
    for keys, res in ((S2_10M, 10), (S2_20M, 20), (S2_60M, 60)):
        for key in keys:
            _, meta = _read(item.assets[key].href)
            assert meta["res"] == (res, res) and meta["dtype"] in ("uint16", "uint8") and meta["nodata"] == 0
            assert meta["crs"].to_epsg() == 32618
            assert item.assets[key].extra_fields["proj:shape"] == list(meta["shape"])
    assert _read(item.assets["B04"].href)[1]["dtype"] == "uint16"


def test_assets_are_valid_cogs(july_s2, city):
    item = july_s2[0]
    for key in ("B02", "B05", "B01", "SCL"):
        valid, errors, _ = cog_validate(item.assets[key].href)
        assert valid, (key, errors)
    s1 = city.search("sentinel-1-rtc", BBOX, *JULY)[0]
    assert cog_validate(s1.assets["vv"].href)[0]


def test_water_outside_boroughs_and_truth(city, july_s2):
    truth = city.truth_paths()
    lc, meta = _read(str(truth["landcover"]))
    bld, _ = _read(str(truth["buildings"]))
    land = rasterize([(g, 1) for g in load_boroughs().geometry], out_shape=meta["shape"],
                     transform=meta["transform"], fill=0, dtype="uint8").astype(bool)
    assert (lc[~land] == 0).all() and (~land).sum() > 1000          # East River / Hudson are water
    assert set(np.unique(lc[land])) >= {1, 2, 3}                      # built-up, forest, grass
    assert (lc[land] == 2).mean() > 0.05                              # Central Park-like green
    assert bld.max() == 1 and (lc[bld == 1] == 1).all()               # buildings are developed
    clear = min(july_s2, key=lambda it: it.properties["eo:cloud_cover"])
    scl, _ = _read(clear.assets["SCL"].href)
    lc20 = lc[1::2, 1::2]
    ok = (scl != 0) & ~np.isin(scl, (3, 8, 9, 10))
    assert (scl[ok & (lc20 == 0)] == 6).all() and (scl[ok & np.isin(lc20, (2, 3))] == 4).all()


def test_clouds_match_scl_and_cloud_cover(july_s2):
    cloudy = max(july_s2, key=lambda it: it.properties["eo:cloud_cover"])
    scl, _ = _read(cloudy.assets["SCL"].href)
    b02, _ = _read(cloudy.assets["B02"].href)
    b02_20 = b02[::2, ::2].astype(float)
    data = scl != 0
    expected = 100 * np.isin(scl[data], (8, 9, 10)).mean()
    assert cloudy.properties["eo:cloud_cover"] == pytest.approx(expected, abs=1e-3)
    assert np.isin(scl, (8, 9)).any()
    assert b02_20[scl == 9].mean() > 5000 > b02_20[np.isin(scl, (4, 5, 6))].mean()   # bright clouds


def test_cloud_shadows_are_flagged_and_darkened(july_s2):
    """Shadows (SCL 3) exist in this month and darken the very pixels that are clear in another
    scene to 0.4 of their reflectance (the generator's shadow factor)."""
    def bands(item):
        return _read(item.assets["SCL"].href)[0], _read(item.assets["B02"].href)[0][::2, ::2].astype(float)

    shadowed = max(july_s2, key=lambda it: int((bands(it)[0] == 3).sum()))
    scl, b02 = bands(shadowed)
    assert (scl == 3).sum() > 500, "the fixture month must hold cloud shadows"
    clear = min(july_s2, key=lambda it: it.properties["eo:cloud_cover"])
    assert clear.id != shadowed.id
    scl_c, b02_c = bands(clear)
    both = (scl == 3) & np.isin(scl_c, (4, 5, 6))
    assert both.sum() > 300
    offset = 1000   # July 2024: baseline 05.10, BOA_ADD_OFFSET
    ratio = (b02[both] - offset) / (b02_c[both] - offset)
    assert np.median(ratio) == pytest.approx(0.4, abs=0.04)   # 0.385 measured (per-scene gain)


def test_offset_only_from_2022_01_25(city, july_s2):
    old = city.search("sentinel-2-l2a", BBOX, dt.datetime(2021, 7, 1), dt.datetime(2021, 8, 1))
    assert old and all(it.properties["s2:processing_baseline"] < "04.00" for it in old)

    def water_b08(item) -> float:
        scl, _ = _read(item.assets["SCL"].href)
        b08, _ = _read(item.assets["B08"].href)
        return float(np.median(b08[::2, ::2][scl == 6]))

    new = min(july_s2, key=lambda it: it.properties["eo:cloud_cover"])
    oldc = min(old, key=lambda it: it.properties["eo:cloud_cover"])
    assert water_b08(new) - water_b08(oldc) == pytest.approx(1000, abs=60)
    assert new.assets["B04"].extra_fields["raster:bands"][0]["offset"] == -0.1


def test_partial_coverage_scenes(july_s2):
    partial = [it for it in july_s2 if it.properties["s2:nodata_pixel_percentage"] > 5]
    assert partial, "some scenes come from the neighbouring orbit with a swath edge"
    item = partial[0]
    scl, _ = _read(item.assets["SCL"].href)
    b02, _ = _read(item.assets["B02"].href)
    assert (scl[:, 0] == 0).all() and (b02[::2, ::2][scl == 0] == 0).all()
    assert (b02[::2, ::2][scl != 0] > 0).all()


def test_s1_linear_power_and_sparse_month(city):
    july = city.search("sentinel-1-rtc", BBOX, *JULY)
    assert 2 <= len(july) <= 3
    vv, meta = _read(july[0].assets["vv"].href)
    assert meta["dtype"] == "float32" and meta["nodata"] == -32768 and meta["res"] == (10, 10)
    assert 0 < vv.min() and vv.max() < 5   # linear power, not dB
    assert july[0].properties["sar:polarizations"] == ["VV", "VH"]
    assert len(city.search("sentinel-1-rtc", BBOX, dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 1))) == 1
    assert len(city.search("sentinel-1-rtc", BBOX, dt.datetime(2019, 3, 1), dt.datetime(2019, 4, 1))) >= 4


def test_all_cloud_month(city):
    items = city.search("sentinel-2-l2a", BBOX, dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1))
    assert items and all(it.properties["eo:cloud_cover"] == 100 for it in items)
    filt = {"op": "<", "args": [{"property": "eo:cloud_cover"}, 90]}
    assert city.search("sentinel-2-l2a", BBOX, dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1), filt) == []


def test_dem_in_wgs84_two_tiles(city):
    dems = city.search("cop-dem-glo-30", BBOX, dt.datetime(2000, 1, 1), dt.datetime(2100, 1, 1))
    assert dems and all(it.properties["proj:epsg"] == 4326 for it in dems)
    dem, meta = _read(dems[0].assets["data"].href)
    assert meta["dtype"] == "float32" and meta["res"][0] == pytest.approx(1 / 3600)
    assert dem.min() >= 0 and 10 < dem.max() < 200
    assert city.search("cop-dem-glo-30", BBOX, *JULY) == []   # dated 2021-04-22, as on PC


def _digest(item) -> str:
    h = hashlib.sha256()
    for key in sorted(item.assets):
        h.update(Path(item.assets[key].href).read_bytes())
    return h.hexdigest()


def test_deterministic_and_seeded(city, july_s2, tmp_path):
    again = EmbeddedCatalog(tmp_path / "a", seed=7, bbox_lonlat=BBOX).search("sentinel-2-l2a", BBOX, *JULY)
    other = EmbeddedCatalog(tmp_path / "b", seed=8, bbox_lonlat=BBOX).search("sentinel-2-l2a", BBOX, *JULY)
    assert [_digest(i) for i in again] == [_digest(i) for i in july_s2]
    assert _digest(other[0]) != _digest(july_s2[0])


def test_idempotent_and_partial_month_regenerated(tmp_path):
    cat = EmbeddedCatalog(tmp_path, seed=3, bbox_lonlat=BBOX)
    catalog_json = cat.ensure_s1_month(2024, 7)
    unit = catalog_json.parent
    first = {p: p.stat().st_mtime_ns for p in unit.rglob("*.tif")}
    cat.ensure_s1_month(2024, 7)
    assert {p: p.stat().st_mtime_ns for p in unit.rglob("*.tif")} == first      # reused, not rewritten
    (unit / MARKER).unlink()                                                      # an interrupted month
    victim = next(iter(first))
    victim.unlink()
    items = EmbeddedCatalog(tmp_path, seed=3, bbox_lonlat=BBOX).search("sentinel-1-rtc", BBOX, *JULY)
    assert (unit / MARKER).is_file() and victim.is_file() and len(items) >= 2


def test_open_catalog_embedded_from_config(tmp_path):
    cfg = CatalogConfig(kind="embedded", signing="none", embedded_root=str(tmp_path), embedded_seed=5,
                        embedded_bbox_lonlat=BBOX, embedded_sparse_radar_months=["2024-07"])
    cat = open_catalog(cfg)
    items = cat.search("sentinel-1-rtc", BBOX, *JULY)
    assert isinstance(cat, EmbeddedCatalog) and len(items) == 1
    assert cat.sign(items[0]).assets["vv"].href == items[0].assets["vv"].href
    with pytest.raises(ValueError, match="esa-worldcover"):
        cat.search("esa-worldcover", BBOX, *JULY)
