"""StaticCatalog (in-memory CQL2), item_from_files on the real TerraMesh chip, and StacApiCatalog
against a real STAC API server (stac-fastapi-geoparquet on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt

import pytest
import rasterio

from catalogs import open_catalog
from catalogs.embedded import EmbeddedCatalog
from catalogs.stac_api import CatalogError, StacApiCatalog
from catalogs.static import StaticCatalog, item_from_files, write_static_catalog
from nyceo.config import CatalogConfig
from tests.conftest import TEST_DATA
from tests.stac_server import serve_items

BBOX = (-73.985, 40.765, -73.945, 40.795)
SPRING = (dt.datetime(2023, 4, 1), dt.datetime(2023, 6, 1))
LOW_CLOUD = {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]}


@pytest.fixture(scope="module")
def spring_items(tmp_path_factory):
    """Two months of embedded Sentinel-2 items (12 scenes) over a small area."""
    cat = EmbeddedCatalog(tmp_path_factory.mktemp("emb"), seed=11, bbox_lonlat=BBOX)
    return cat.search("sentinel-2-l2a", BBOX, *SPRING) + cat.search("sentinel-1-rtc", BBOX, *SPRING)


@pytest.fixture(scope="module")
def stac_url(spring_items, tmp_path_factory):
    # one collection per server: stac-fastapi-geoparquet 0.0.7 mislabels mixed collections
    s2 = [it for it in spring_items if it.collection_id == "sentinel-2-l2a"]
    with serve_items(s2, tmp_path_factory.mktemp("stac")) as url:
        yield url


def _expected(items, collection, start, end, max_cloud=None):
    out = [it for it in items if it.collection_id == collection
           and start.replace(tzinfo=dt.timezone.utc) <= it.datetime < end.replace(tzinfo=dt.timezone.utc)]
    if max_cloud is not None:
        out = [it for it in out if it.properties["eo:cloud_cover"] <= max_cloud]
    return sorted(it.id for it in out)


def test_static_catalog_filters(spring_items, tmp_path):
    path = write_static_catalog(spring_items, tmp_path / "cat", "t", "test")
    cat = open_catalog(CatalogConfig(kind="static", url=str(path), signing="none"))
    assert isinstance(cat, StaticCatalog)
    may = (dt.datetime(2023, 5, 1), dt.datetime(2023, 6, 1))
    got = cat.search("sentinel-2-l2a", BBOX, *may)
    assert len(got) >= 5 and sorted(it.id for it in got) == _expected(spring_items, "sentinel-2-l2a", *may)
    low = cat.search("sentinel-2-l2a", BBOX, *SPRING, LOW_CLOUD)
    all_s2 = _expected(spring_items, "sentinel-2-l2a", *SPRING)
    assert 0 < len(low) < len(all_s2)                                   # the filter kept some, dropped some
    assert sorted(it.id for it in low) == _expected(spring_items, "sentinel-2-l2a", *SPRING, 20)
    both = {"op": "and", "args": [LOW_CLOUD, {"op": "=", "args": [{"property": "sat:relative_orbit"}, 11]}]}
    want = sorted(it.id for it in low if it.properties["sat:relative_orbit"] == 11)
    assert 0 < len(want) < len(low)                                     # both clauses matter here
    assert sorted(it.id for it in cat.search("sentinel-2-l2a", BBOX, *SPRING, both)) == want
    assert cat.search("sentinel-2-l2a", (10.0, 56.0, 10.1, 56.1), *SPRING) == []          # Denmark
    s1 = _expected(spring_items, "sentinel-1-rtc", *SPRING)
    assert s1 and sorted(it.id for it in cat.search("sentinel-1-rtc", BBOX, *SPRING)) == s1
    href = got[0].assets["B04"].href
    assert href.startswith("/") and rasterio.open(href).read(1).shape == tuple(got[0].assets["B04"].extra_fields["proj:shape"])
    with pytest.raises(ValueError, match="not supported"):
        cat.search("sentinel-2-l2a", BBOX, *SPRING, {"op": "s_crosses", "args": []})


def test_terramesh_chip_as_static_item(tmp_path):
    chip = {"s2l2a": TEST_DATA / "terramesh_637U_59R_1_3_s2l2a.tif", "dem": TEST_DATA / "terramesh_637U_59R_1_3_dem.tif"}
    item = item_from_files("637U_59R_1_3", "terramesh", dt.datetime(2017, 10, 30), chip)
    assert item.properties["proj:epsg"] == 32632
    assert item.assets["s2l2a"].extra_fields["raster:bands"][0]["data_type"] == "int16"
    assert len(item.assets["s2l2a"].extra_fields["raster:bands"]) == 12
    assert 9.5 < item.bbox[0] < 10.5 and 56.5 < item.bbox[1] < 57.8       # North Jutland
    path = write_static_catalog([item], tmp_path, "chip", "TerraMesh chip")
    found = StaticCatalog(path).search("terramesh", (9.0, 56.0, 11.0, 58.0), dt.datetime(2017, 10, 1), dt.datetime(2017, 11, 1))
    assert [it.id for it in found] == ["637U_59R_1_3"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        item_from_files("x", "terramesh", dt.datetime(2017, 10, 30), {"a": tmp_path / "missing.tif"})


def test_stac_api_bbox_datetime_and_cql2(spring_items, stac_url):
    cat = StacApiCatalog(stac_url, signing="none", page_size=100)
    may = (dt.datetime(2023, 5, 1), dt.datetime(2023, 6, 1))
    got = cat.search("sentinel-2-l2a", BBOX, *may)
    assert sorted(it.id for it in got) == _expected(spring_items, "sentinel-2-l2a", *may)
    low = cat.search("sentinel-2-l2a", BBOX, *SPRING, LOW_CLOUD)
    assert sorted(it.id for it in low) == _expected(spring_items, "sentinel-2-l2a", *SPRING, 20)
    assert len(low) < len(_expected(spring_items, "sentinel-2-l2a", *SPRING))   # the filter did filter
    assert cat.search("sentinel-2-l2a", (10.0, 56.0, 10.1, 56.1), *SPRING) == []
    assert cat.search("sentinel-2-l2a", BBOX, *may)[0].assets["B02"].href.startswith("/")


def test_stac_api_paging(spring_items, stac_url):
    cat = StacApiCatalog(stac_url, signing="none", page_size=2)
    got = cat.search("sentinel-2-l2a", BBOX, *SPRING)
    expected = _expected(spring_items, "sentinel-2-l2a", *SPRING)
    assert len(expected) > 2 and sorted(it.id for it in got) == expected


def test_stac_api_errors_name_url_and_collection(stac_url):
    dead = StacApiCatalog("http://127.0.0.1:9", signing="none", max_retries=1, backoff_s=0.01)
    with pytest.raises(CatalogError, match="127.0.0.1:9"):
        dead.search("sentinel-2-l2a", BBOX, *SPRING)
    bad = StacApiCatalog(stac_url, signing="none", max_retries=0)
    with pytest.raises(CatalogError, match="sentinel-2-l2a"):
        bad.search("sentinel-2-l2a", BBOX, *SPRING, {"op": "nonsense-op", "args": [1]})


def test_sign_planetary_computer_leaves_local_hrefs(spring_items):
    cat = StacApiCatalog(signing="planetary_computer")
    signed = cat.sign(spring_items[0])
    assert signed is not spring_items[0] and signed.assets["B02"].href == spring_items[0].assets["B02"].href
