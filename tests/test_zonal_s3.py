"""The zonal and report stages with run.output_root on S3 (a real moto server on 127.0.0.1): prediction
store, evaluation, change raster and quicklook read from S3; tables, COGs, the coverage cache and the
report written there atomically and published by pointer; figures equal to the same run on local disk."""

from __future__ import annotations

import io
import json
import re

import fsspec
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from nyceo import versioned
from nyceo.config import load_config
from nyceo.infer.testing import write_stack_store
from nyceo.paths import stack_store
from nyceo.report import stage as report
from nyceo.zonal import stage as zonal
from nyceo.zonal.outputs import read_manifest, read_table, zonal_dir
from tests.conftest import write_config
from tests.test_locks_and_s3 import s3  # noqa: F401 - the moto server fixture
from tests.test_mosaic_helpers import BUILDINGS, LULC, adapter_cfg, seeded_prediction
from tests.zonal_helpers import MONTH, publish_pred, small_area

ROOT = "s3://nyceo-test/zonal"


def _config(tmp, output_root=None, endpoint=None):
    run = {"output_root": output_root, "storage_options": {"endpoint_url": endpoint}} if output_root else {}
    path = write_config(tmp, infer={"adapters": {"lulc_nyc": adapter_cfg(LULC), "buildings_nyc": adapter_cfg(BUILDINGS)}},
                        zonal={"adapters": ["lulc_nyc"], "ndvi": True, "ntas": False}, run=run)
    return load_config(path)


def _change_tif(cfg, codes: np.ndarray) -> bytes:
    area = small_area(cfg)
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=area.width_px, height=area.height_px, count=1, dtype="uint8",
                      crs="EPSG:32618", transform=area.transform, nodata=255) as ds:
            ds.write(codes, 1)
            ds.update_tags(1, CODES=json.dumps({"0": "gain developed", "1": "no change"}))
        return mem.read()


def _png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.imshow(np.arange(16).reshape(4, 4))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _inputs(cfg, cm, prob, fs_put) -> None:
    """The month's upstream outputs: stack and prediction store (published versions), change raster,
    change map and quicklook (the evaluation is added later)."""
    publish_pred(cfg, MONTH, "lulc_nyc", cm, prob)
    final = stack_store(cfg, MONTH)  # published like acquire does: a version folder + pointer (no link on S3)
    write_stack_store(versioned.version_path(final, "cd" * 32), small_area(cfg), 3)
    versioned.publish(final, "cd" * 32)
    root = cfg.run.output_root
    fs_put(f"{root}/{MONTH}/change/lulc_nyc/mom/nyc_transition.tif", _change_tif(cfg, np.where(cm == 1, 0, 1).astype(np.uint8)))
    fs_put(f"{root}/{MONTH}/change/lulc_nyc/mom/transitions.png", _png())
    fs_put(f"{root}/{MONTH}/quicklook/lulc_nyc/nyc.png", _png())


def _put(url: str, data: bytes) -> None:
    if "://" in url:
        fs, p = fsspec.core.url_to_fs(url)
        fs.pipe_file(p, data)
    else:
        from pathlib import Path

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        Path(url).write_bytes(data)


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):  # noqa: F811 - the imported fixture
    cfg = _config(tmp_path_factory.mktemp("s3cfg"), ROOT, s3)
    local = _config(tmp_path_factory.mktemp("localcfg"))
    cm, prob, _ = seeded_prediction(5, (small_area(cfg).height_px, small_area(cfg).width_px), 7)
    for c in (cfg, local):
        _inputs(c, cm, prob, _put)
    results = {"s3": zonal.run(cfg, MONTH), "local": zonal.run(local, MONTH)}
    return cfg, local, cm, prob, results


def test_zonal_on_s3_equals_local_and_is_published_by_pointer(runs):
    cfg, local, _, _, results = runs
    assert results["s3"]["status"] == "done", results["s3"]
    fs, _ = fsspec.core.url_to_fs(ROOT)
    names = fs.find(ROOT)
    key16 = results["s3"]["key"][:16]
    assert f"nyceo-test/zonal/{MONTH}/zonal.current" in names
    for rel in ("zonal.json", "lulc_nyc/borough.parquet", "lulc_nyc/borough.csv", "heat/lulc_nyc_100m.tif",
                "exposure/shoreline_300m_borough.parquet"):
        assert f"nyceo-test/zonal/{MONTH}/zonal@{key16}/{rel}" in names, rel
    assert any(n.startswith("nyceo-test/zonal/zonal_cache/borough@") and n.endswith(".coverage") for n in names)
    assert not any(n.endswith(".tmp") for n in names), "no temporary object left behind"
    s3_t, local_t = read_table(cfg, MONTH, "lulc_nyc/borough.csv"), read_table(local, MONTH, "lulc_nyc/borough.csv")
    cols = [c for c in s3_t.columns if c.endswith(("_km2", "_share"))]
    assert "change_mom_gain_developed_km2" in cols  # the change raster was read from S3
    np.testing.assert_allclose(s3_t[cols].to_numpy(float), local_t[cols].to_numpy(float), rtol=1e-9)
    with fs.open(f"{ROOT}/{MONTH}/zonal@{key16}/heat/lulc_nyc_100m.tif", "rb") as f, rasterio.open(f) as ds:
        heat = ds.read(1)
    with rasterio.open(f"{versioned.resolve(zonal_dir(local, MONTH))}/heat/lulc_nyc_100m.tif") as ds:
        np.testing.assert_array_equal(heat, ds.read(1))
    assert not results["s3"]["skipped"], results["s3"]["skipped"]  # NDVI read the stack through its pointer
    with fs.open(f"{ROOT}/{MONTH}/zonal@{key16}/heat/ndvi_100m.tif", "rb") as f, rasterio.open(f) as ds:
        ndvi = ds.read(1)
    with rasterio.open(f"{versioned.resolve(zonal_dir(local, MONTH))}/heat/ndvi_100m.tif") as ds:
        np.testing.assert_array_equal(ndvi, ds.read(1))
    assert np.isfinite(ndvi).mean() > 0.5
    assert read_manifest(cfg, MONTH)["key"] == results["s3"]["key"] == zonal.inputs_key(cfg, MONTH)
    assert zonal.status(cfg, MONTH).state == "current" and zonal.run(cfg, MONTH)["status"] == "current"


def test_zonal_on_s3_rebuilds_with_an_evaluation_and_reuses_the_s3_coverage_cache(runs):
    cfg, _, cm, prob, results = runs
    _put(f"{ROOT}/{MONTH}/eval/lulc_nyc/truth/metrics.json",
         json.dumps({"classes": LULC["classes"], "city": {"confusion": (np.eye(5) * 50 + 2).tolist()}}).encode())
    assert zonal.status(cfg, MONTH).state == "stale"
    again = zonal.run(cfg, MONTH)
    assert again["status"] == "done" and again["key"] != results["s3"]["key"] and all(again["coverage_cache_hits"].values())
    fs, _ = fsspec.core.url_to_fs(ROOT)
    fs.invalidate_cache()
    versions = sorted(e.rsplit("/", 1)[-1] for e in fs.ls(f"{ROOT}/{MONTH}") if "/zonal@" in e)
    assert versions == [f"zonal@{again['key'][:16]}"], "the previous version is removed once the new one is published"
    t = read_table(cfg, MONTH, "lulc_nyc/borough.csv")
    assert (t["developed_share_lo"] <= t["developed_share_adj"]).all()


def test_report_on_s3(runs):
    cfg, *_ = runs
    assert zonal.run(cfg, MONTH)["status"] in ("done", "current")
    result = report.run(cfg, MONTH)
    assert result["status"] == "done", result
    folder = versioned.resolve(report.report_dir(cfg, MONTH))
    assert folder.startswith(f"{ROOT}/{MONTH}/report@")
    fs, p = fsspec.core.url_to_fs(folder)
    html = fs.cat_file(f"{p}/index.html").decode()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    for name in ("map_lulc_nyc.png", "change_lulc_nyc_mom_transitions.png", "areas_lulc_nyc.png", "heat_lulc_nyc_100m.png"):
        assert f"img/{name}" in srcs, name
    for s in srcs:
        assert fs.cat_file(f"{p}/{s}")[:8] == b"\x89PNG\r\n\x1a\n", s
    manifest = json.loads(fs.cat_file(f"{p}/report.json"))
    assert manifest["key"] == report.inputs_key(cfg, MONTH) and f"{MONTH}/quicklook/lulc_nyc/nyc.png" in manifest["inputs"]
    assert report.status(cfg, MONTH).state == "current" and report.run(cfg, MONTH)["status"] == "current"
    assert report.artifacts(cfg, MONTH)["link"] == f"{folder}/index.html"  # the object that exists
