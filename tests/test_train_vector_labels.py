"""Vector label sources: a GeoPackage in EPSG:4326 made from the tiny case's label raster gives the
raster's label chips (differences only on class-boundary pixels), its identity is file sha256 +
attribute, and bad layers are refused before training with errors naming the thing and the fix."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.features import shapes

from nyceo.config import load_config
from nyceo.io import sha256_file
from nyceo.train.data import collect_samples
from nyceo.train.errors import TrainError
from nyceo.train.labels import resolve_label_source
from nyceo.train.manifest import train_key
from nyceo.train.run import preflight
from tests.test_train_fit import ADAPTER, make_case

KEY = f"train.adapters.{ADAPTER}.labels"


def polygons_of(raster: Path) -> gpd.GeoDataFrame:
    """The label raster's pixels as polygons (one per connected region of a code), with a name each."""
    with rasterio.open(raster) as ds:
        codes, transform, crs, nodata = ds.read(1), ds.transform, ds.crs, ds.nodata
    parts = [(shapely.geometry.shape(g), int(v)) for g, v in shapes(codes, transform=transform) if v != nodata]
    return gpd.GeoDataFrame({"class_code": [v for _, v in parts], "name": [f"region-{i}" for i in range(len(parts))]},
                            geometry=[g for g, _ in parts], crs=crs)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vector")
    path = make_case(tmp)
    regions = polygons_of(tmp / "labels.tif")
    regions.to_crs("EPSG:4326").to_file(tmp / "labels.gpkg", driver="GPKG")
    return path, tmp, regions


def labels_cfg(path: Path, **labels):
    return load_config(path, {KEY: {"remap": {10: 0, 20: 1}, **labels}})


def test_a_geopackage_in_4326_gives_the_rasters_label_chips(case):
    path, tmp, regions = case
    assert len(regions) > 3 and set(regions["class_code"]) == {10, 20}
    raster = {s.chip_id: s.labels for s in collect_samples(load_config(path), ADAPTER).samples}
    vector = {s.chip_id: s.labels for s in collect_samples(
        labels_cfg(path, source=str(tmp / "labels.gpkg"), attribute="class_code"), ADAPTER).samples}
    assert sorted(vector) == sorted(raster) and len(raster) == 4
    for cid, lab in raster.items():
        assert set(np.unique(lab)) == {0, 1}
        pad = np.pad(lab, 1, mode="edge")
        win = np.stack([pad[dy:dy + 224, dx:dx + 224] for dy in range(3) for dx in range(3)])
        boundary = win.min(0) != win.max(0)
        wrong = vector[cid] != lab
        assert not (wrong & ~boundary).any(), cid  # away from class boundaries: identical
        assert wrong.sum() <= 0.02 * boundary.sum(), (cid, int(wrong.sum()), int(boundary.sum()))


def test_identity_is_file_sha256_and_attribute(case):
    path, tmp, _ = case
    cfg = labels_cfg(path, source=str(tmp / "labels.gpkg"), attribute="class_code")
    source = resolve_label_source(cfg, ADAPTER, cfg.train.adapters[ADAPTER])
    assert source.kind == "vector"
    assert source.identity == {"kind": "vector", "file_sha256": sha256_file(tmp / "labels.gpkg"),
                               "attribute": "class_code"}
    other = dict(source.identity, attribute="other_code")
    assert train_key(cfg, ADAPTER, {}, source.identity) != train_key(cfg, ADAPTER, {}, other)


def test_a_code_missing_from_the_remap_names_the_feature(case):
    path, tmp, regions = case
    bad = regions.copy()
    big = bad.area.idxmax()  # the largest region: it lies on the training chips
    bad.loc[big, "class_code"] = 30
    bad.to_crs("EPSG:4326").to_file(tmp / "bad.gpkg", driver="GPKG")
    cfg = labels_cfg(path, source=str(tmp / "bad.gpkg"), attribute="class_code", id_attribute="name")
    with pytest.raises(TrainError, match=r"label layer .*bad\.gpkg \(attribute 'class_code'\): label code\(s\) not in "
                                         rf"labels\.remap \[10, 20\].*code 30: feature\(s\) \['{bad.loc[big, 'name']}'\].*map each code"):
        preflight(cfg, ADAPTER)


def test_a_layer_without_crs_attribute_or_overlap_is_refused(case):
    path, tmp, regions = case
    regions.to_file(tmp / "nocrs.shp")
    (tmp / "nocrs.prj").unlink()
    with pytest.raises(TrainError, match=r"nocrs\.shp has no CRS; set one"):
        preflight(labels_cfg(path, source=str(tmp / "nocrs.shp"), attribute="class_code"), ADAPTER)
    with pytest.raises(TrainError, match=r"has no attribute 'code' \(it has \['class_code', 'name'\]\); fix "
                                         r"labels\.attribute"):
        preflight(labels_cfg(path, source=str(tmp / "labels.gpkg"), attribute="code"), ADAPTER)
    with pytest.raises(TrainError, match=r"needs labels\.attribute"):
        preflight(labels_cfg(path, source=str(tmp / "labels.gpkg")), ADAPTER)
    south = regions.set_geometry(regions.translate(yoff=-10 * 2240.0)).to_crs("EPSG:4326")  # 10 chips south
    south.to_file(tmp / "south.gpkg", driver="GPKG")
    with pytest.raises(TrainError, match=r"feature\(s\) of the label layer .*south\.gpkg .* do not overlap the stacks "
                                         r"of \['2024-07'\]"):
        preflight(labels_cfg(path, source=str(tmp / "south.gpkg"), attribute="class_code"), ADAPTER)
