"""STAC catalog of the mosaics (local, read back with pystac) and the S3 output path (moto)."""

from __future__ import annotations

import json
import posixpath
from pathlib import Path

import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from nyceo.mosaic import layout
from nyceo.mosaic.stac import update_catalog
from nyceo.mosaic.stage import mosaic_area, mosaic_month
from tests.conftest import free_port
from tests.test_mosaic_helpers import BUILDINGS, LULC, make_config, write_pred_store


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    cfg = make_config(tmp_path_factory.mktemp("stac"), ["Manhattan"])
    for month in ("2024-06", "2024-07"):
        for i, a in enumerate(("lulc_nyc", "buildings_nyc")):
            write_pred_store(cfg, month, a, seed=i)
        mosaic_month(cfg, month)
        path = update_catalog(cfg, month)  # second month must keep the first's items
    return cfg, path


def test_catalog_reads_back_and_every_href_resolves(catalog):
    cfg, path = catalog
    cat = pystac.Catalog.from_file(path)
    colls = {c.id: c for c in cat.get_children()}
    assert set(colls) == {"lulc_nyc", "buildings_nyc"}
    items = list(cat.get_items(recursive=True))
    assert sorted(i.id for i in items) == sorted(
        f"{a}_{m}_{s}" for a in colls for m in ("2024-06", "2024-07") for s in ("manhattan", "nyc"))
    for item in items:
        assert item.collection_id in colls
        for asset in item.assets.values():
            assert not Path(asset.href).is_absolute()
            assert Path(asset.get_absolute_href()).is_file(), asset.href
    raw = json.loads(Path(path).read_text())
    assert all(link["rel"] != "self" for link in raw["links"])
    ext = colls["lulc_nyc"].extent.temporal.intervals[0]
    assert ext[0].isoformat().startswith("2024-06-01") and ext[1].isoformat().startswith("2024-07-31T23:59:59")


def test_item_properties_and_extensions(catalog):
    cfg, path = catalog
    cat = pystac.Catalog.from_file(path)
    item = next(i for i in cat.get_items(recursive=True) if i.id == "buildings_nyc_2024-07_manhattan")
    p = item.properties
    assert p["start_datetime"] == "2024-07-01T00:00:00Z" and p["end_datetime"] == "2024-07-31T23:59:59Z"
    assert p["nyceo:source_scenes"] == ["S1A_IW_GRDH_20240706", "S2A_MSIL2A_20240704_T18TWL"]
    assert p["nyceo:model"] == "terramind_v1_tiny" and p["nyceo:adapter"] == "buildings_nyc"
    assert p["nyceo:adapter_revision"] == "abc123" and "adapter_model.safetensors" in p["nyceo:adapter_sha256"]
    assert p["nyceo:config_hash"] == cfg.config_hash() and p["nyceo:software"].startswith("nyceo ")
    with rasterio.open(item.assets["class"].get_absolute_href()) as ds:
        assert p["proj:shape"] == [ds.height, ds.width] and p["proj:transform"] == list(ds.transform)[:6]
    assert p["proj:code"] == "EPSG:32618"
    exts = " ".join(item.stac_extensions)
    assert "classification" in exts and "raster" in exts and "projection" in exts
    classes = item.assets["class"].extra_fields["classification:classes"]
    assert [(c["value"], c["name"], c["color_hint"]) for c in classes if not c.get("nodata")] == [
        (i, n, c.lstrip("#").upper()) for i, (n, c) in enumerate(zip(BUILDINGS["classes"], BUILDINGS["colors"]))]
    prob = item.assets["probability"].extra_fields["raster:bands"][0]
    assert prob["data_type"] == "uint8" and prob["nodata"] == 255 and prob["scale"] == pytest.approx(1 / 254)
    assert item.assets["class"].media_type == pystac.MediaType.COG
    assert item.assets["quicklook"].roles == ["overview"] and item.assets["thumbnail"].roles == ["thumbnail"]
    lulc = next(i for i in cat.get_items(recursive=True) if i.id == "lulc_nyc_2024-06_nyc")
    assert "probability" not in lulc.assets
    assert [c["name"] for c in lulc.assets["class"].extra_fields["classification:classes"]][:5] == LULC["classes"]


@pytest.fixture()
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(k, "testing")
    opts = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}
    import s3fs

    fs = s3fs.S3FileSystem(**opts)
    fs.mkdir("nyceo-out")
    yield fs, opts
    server.stop()


def test_outputs_to_s3_are_uploaded_atomically_skipped_and_catalogued(tmp_path, s3):
    fs, opts = s3
    cfg = make_config(tmp_path, ["Manhattan"], output_root="s3://nyceo-out/prod", storage_options=opts)
    write_pred_store(cfg, "2024-07", "buildings_nyc", seed=2)
    first = mosaic_area(cfg, "2024-07", "buildings_nyc", "manhattan")
    keys = set(fs.find("nyceo-out/prod"))
    assert {f"nyceo-out/prod/{rel}" for rel in first.files.values()} == keys
    local = tmp_path / "dl.tif"
    fs.get(f"nyceo-out/prod/{first.files['class']}", str(local))
    assert cog_validate(str(local))[0]
    assert not Path(layout.out_path(cfg, first.files["class"])).exists()  # nothing written locally
    again = mosaic_area(cfg, "2024-07", "buildings_nyc", "manhattan")
    assert again.skipped  # the input key was read from the COG header on S3
    mosaic_area(cfg, "2024-07", "buildings_nyc", "nyc")
    update_catalog(cfg, "2024-07", ["buildings_nyc"])
    cat = json.loads(fs.cat("nyceo-out/prod/catalog.json"))
    assert [link["href"] for link in cat["links"] if link["rel"] == "child"] == ["./stac/buildings_nyc/collection.json"]
    item_rel = layout.item_rel("2024-07", "buildings_nyc", "manhattan")
    item = pystac.Item.from_dict(json.loads(fs.cat(f"nyceo-out/prod/{item_rel}")))
    for asset in item.assets.values():
        assert fs.exists(posixpath.normpath(f"nyceo-out/prod/{posixpath.dirname(item_rel)}/{asset.href}")), asset.href
    assert not [k for k in fs.find("nyceo-out") if k.endswith(".tmp")]


def test_cli_mosaic_writes_cogs_and_catalog(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    cfg = make_config(tmp_path, ["Manhattan"])
    write_pred_store(cfg, "2024-08", "lulc_nyc", seed=9)
    cmd = [sys.executable, "-m", "nyceo.cli", "mosaic", "--month", "2024-08", "-c", str(tmp_path / "config.yaml"),
           "--adapters", "lulc_nyc"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "manhattan" in run.stdout and "catalog ->" in run.stdout
    assert pystac.Catalog.from_file(str(tmp_path / "outputs" / "catalog.json")).get_child("lulc_nyc")
    bad = subprocess.run(cmd[:-1] + ["nope"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and "not in infer.adapters" in bad.stderr
