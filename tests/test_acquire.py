"""Acquisition stage on small seeded scenes (real GeoTIFFs, static STAC catalog, Zarr on disk)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from pyproj import Transformer

from catalogs.static import StaticCatalog, write_static_catalog
from nyceo.acquire import AssetReadError, run_acquire
from nyceo.acquire.contract import acquire_status
from nyceo.acquire import harmonize as hz
from nyceo.acquire.select import select_s1_dates, select_s2_dates
from nyceo.acquire.testing import S2Scene, dem_height, s1_power, s2_value, write_scenes
from nyceo.config import load_config
from nyceo.grid import Lattice, parse_chip_id
from tests.conftest import REPO

CHIPS = ["r0220_c0263", "r0220_c0265"]  # r0220_c0264 between them is not selected
D = dt.date
JULY_S2 = [S2Scene(D(2024, 7, 3), 0.9, cloud_cover_pct=5.0),  # scene metadata says clear; SCL says cloud
           S2Scene(D(2024, 7, 8), 0.2), S2Scene(D(2024, 7, 13), 0.0), S2Scene(D(2024, 7, 18), 0.5),
           S2Scene(D(2024, 7, 23), 0.1), S2Scene(D(2024, 7, 28), 1.0)]
JULY_S1 = [D(2024, 6, 23), D(2024, 7, 5), D(2024, 7, 17), D(2024, 7, 29)]
JAN_S2 = [S2Scene(D(2022, 1, 5), 0.0, "03.01"), S2Scene(D(2022, 1, 15), 0.0, "03.01"),
          S2Scene(D(2022, 1, 26), 0.0, "04.00"), S2Scene(D(2022, 1, 30), 0.0, "04.00")]
JAN_S1 = [D(2022, 1, 10), D(2022, 1, 20)]
MARCH_S2 = [S2Scene(D(2024, 3, 4), 1.0, cloud_cover_pct=40.0), S2Scene(D(2024, 3, 14), 1.0, cloud_cover_pct=60.0)]
MARCH_S1 = [D(2024, 3, 6), D(2024, 3, 18)]


def tiles(margin_m: float = 80.0) -> list[tuple[float, float, float, float]]:
    lat = Lattice(0.0, 5_017_600.0, 224, 10.0)
    out = []
    for cid in CHIPS:
        minx, miny, maxx, maxy = lat.chip_bounds(*parse_chip_id(cid))
        out.append((minx - margin_m, miny - margin_m, maxx + margin_m, maxy + margin_m))
    return out


def make_catalog(root: Path, s2: list[S2Scene], s1: list[dt.date]) -> Path:
    items = write_scenes(root, tiles(), s2, s1)
    return write_static_catalog(items, root, "acquire-test", "seeded scenes for acquisition tests")


def make_config(tmp: Path, catalog: Path, **acquire: object) -> Path:
    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    raw["run"] = {"name": "test", "output_root": str(tmp / "outputs")}
    raw["catalog"] = {"kind": "static", "url": str(catalog), "signing": "none"}
    raw["grid"]["block_size_chips"] = 1
    raw["acquire"] = {"chip_ids": CHIPS, **acquire}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def catalog_path(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    return make_catalog(root, JULY_S2 + JAN_S2 + MARCH_S2, JULY_S1 + JAN_S1 + MARCH_S1)


@pytest.fixture(scope="module")
def july(tmp_path_factory, catalog_path):
    """July 2024 acquired once on a real dask cluster with two worker processes."""
    from distributed import Client, LocalCluster

    tmp = tmp_path_factory.mktemp("july")
    cfg = load_config(make_config(tmp, catalog_path))
    seen: list[dict] = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            result = run_acquire(cfg, "2024-07", client=client, progress=seen.append)
    return cfg, tmp, result, seen


def open_stack(cfg, month: str) -> xr.Dataset:
    return xr.open_zarr(f"{cfg.run.output_root}/{month}/stack.zarr", consolidated=False, mask_and_scale=False)


def chip_truth(cid: str):
    lat = Lattice(0.0, 5_017_600.0, 224, 10.0)
    minx, _, _, maxy = lat.chip_bounds(*parse_chip_id(cid))
    x = minx + 10.0 * (np.arange(224) + 0.5)
    y = maxy - 10.0 * (np.arange(224) + 0.5)
    return np.meshgrid(x, y)


def test_selection_rules():
    # S1: 2 dates in January, none near it -> widened to the limit, then the nearest repeated.
    sel = select_s1_dates(JAN_S1, "2022-01", 4, 7, 21)
    assert sel.repeated and sel.window_extra_days == 21 and len(sel.dates) == 4
    assert set(sel.dates) == set(JAN_S1)
    # One step of widening is enough when a date lies 8 days before the month (needs 14 days).
    sel = select_s1_dates(JULY_S1, "2024-07", 4, 7, 21)
    assert not sel.repeated and sel.window_extra_days == 14 and sel.dates == JULY_S1
    assert select_s1_dates([D(2024, 5, 1)], "2024-07", 4, 7, 21) is None
    # S2: clearest by SCL fraction, chronological; too few -> nearest repeated; none -> [].
    frac = {D(2024, 7, 3): 0.07, D(2024, 7, 8): 0.8, D(2024, 7, 13): 1.0, D(2024, 7, 18): 0.5, D(2024, 7, 23): 0.9}
    assert select_s2_dates(frac, "2024-07", 4, 0.05) == [D(2024, 7, 8), D(2024, 7, 13), D(2024, 7, 18), D(2024, 7, 23)]
    assert select_s2_dates({D(2024, 7, 13): 1.0}, "2024-07", 4, 0.05) == [D(2024, 7, 13)] * 4
    assert select_s2_dates({D(2024, 7, 13): 0.01}, "2024-07", 4, 0.05) == []


def test_harmonize_units():
    dn = np.array([[[0, 500, 1500, 2500]]], dtype=np.uint16)
    assert hz.harmonize_s2(dn, 1000).tolist() == [[[-32768, 0, 500, 1500]]]
    assert hz.harmonize_s2(dn, 0).tolist() == [[[-32768, 500, 1500, 2500]]]
    db = hz.to_db(np.array([0.1, 1.0, 0.0, np.nan], dtype=np.float32))
    assert np.allclose(db[:2], [-10.0, 0.0]) and np.isnan(db[2:]).all()
    data = np.arange(3 * 1 * 1 * 2, dtype=np.float32).reshape(3, 1, 1, 2)
    valid = np.array([[[False, False]], [[True, False]], [[True, False]]])
    flags = hz.temporal_fill(data, valid, [D(2024, 7, 1), D(2024, 7, 9), D(2024, 7, 5)])
    assert data[0, 0, 0, 0] == 4.0  # from the nearest date (07-05), not the nearest index
    assert flags[:, 0, 0].tolist() == [2, 1, 1] and flags[:, 0, 1].tolist() == [0, 0, 0]


def test_end_to_end_on_dask_workers(july):
    cfg, _, result, seen = july
    assert result["status"] == "done" and result["blocks_done"] == 2
    assert sorted(r["block_id"] for r in seen) == ["b220_263", "b220_265"]
    ds = open_stack(cfg, "2024-07")
    assert ds.s2.dtype == np.int16 and ds.s1.dtype == np.float32 and ds.s2_valid.dtype == np.uint8
    assert ds.s2.encoding["chunks"] == (4, 12, 224, 224)
    assert list(ds.s2_band.values) == cfg.acquire.s2_bands and list(ds.s1_band.values) == ["vv", "vh"]
    assert ds.spatial_ref.attrs["crs_wkt"].find("32618") > 0 or "UTM zone 18N" in ds.spatial_ref.attrs["crs_wkt"]
    # Per-chip dates: the 4 SCL-clearest, not 07-03 whose scene-level cloud cover (5 %) lies.
    dates = xr.open_zarr(f"{cfg.run.output_root}/2024-07/stack.zarr", consolidated=False).s2_date
    chosen = [str(v)[:10] for v in dates.sel(chip_row=220, chip_col=263).values]
    assert chosen == ["2024-07-08", "2024-07-13", "2024-07-18", "2024-07-23"]
    assert np.isnat(dates.sel(chip_row=220, chip_col=264).values).all()
    x, y = chip_truth("r0220_c0265")
    s2 = ds.s2.sel(x=x[0], y=y[:, 0], method="nearest").values  # (time, band, y, x)
    flags = ds.s2_valid.sel(x=x[0], y=y[:, 0], method="nearest").values
    for band in (1, 2, 3, 7):  # the 10 m bands are exact; filled pixels hold clear values too
        assert np.array_equal(s2[:, band], np.broadcast_to(s2_value(band, x, y), s2[:, band].shape))
    assert (flags[2, :60] == 2).all() and (flags[2, 200:] == 1).all()  # 07-18: top half cloud, filled
    s1 = ds.s1.sel(x=x[0], y=y[:, 0], method="nearest").values
    assert np.allclose(s1[:, 0], 10 * np.log10(s1_power("vv", x, y)), atol=0.05)
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(x, y)
    dem = ds.dem.sel(x=x[0], y=y[:, 0], method="nearest").values
    assert np.allclose(dem, dem_height(lon, lat), atol=0.5)
    # The chip between the two selected ones was never written.
    mid_x, _ = chip_truth("r0220_c0264")
    assert (ds.s2.sel(x=mid_x[0], method="nearest").values == -32768).all()
    store = Path(cfg.run.output_root, "2024-07", "stack.zarr")
    assert store.is_symlink() and store.resolve().name.startswith("stack@")  # the published build
    assert not (store / "s2" / "c" / "0" / "0" / "0" / "1").exists() and (store / "s2/c/0/0/0/2").exists()
    prov = ds.attrs["provenance"]
    assert prov["config_hash"] == cfg.config_hash() and "s2" in prov["selection_policy"]
    assert prov["inputs_key"] == json.loads(Path(f"{store}.current").read_text())["key"]
    assert "S2B_MSIL2A_20240713T154809_N0510_R054_T18TWL_t0" in prov["scene_ids"]
    assert not any("20240703" in s for s in prov["scene_ids"])
    assert prov["blocks"]["b220_263"]["s1"]["window_extra_days"] == 14
    assert acquire_status(cfg, "2024-07").state == "current"


def test_other_acquire_settings_build_beside_the_published_stack(july, catalog_path, tmp_path):
    """Another output-affecting setting: the published stack stays (stale, readable) until the new
    build is complete; read_threads (execution) and a moved output folder change nothing."""
    _, tmp, _, _ = july
    shutil.copytree(tmp / "outputs", tmp_path / "outputs", symlinks=True)  # moved: relative links survive
    cfg = load_config(make_config(tmp_path, catalog_path))
    assert acquire_status(cfg, "2024-07").state == "current"
    threads = load_config(make_config(tmp_path, catalog_path, read_threads=1))
    assert acquire_status(threads, "2024-07").state == "current"
    other = load_config(make_config(tmp_path, catalog_path, s2_min_clear_fraction=0.3))
    before = acquire_status(other, "2024-07")
    assert before.state == "stale" and not before.rebuilding
    assert run_acquire(other, "2024-07")["status"] == "done"
    assert acquire_status(other, "2024-07").state == "current"
    assert acquire_status(cfg, "2024-07").state == "stale"  # and now the first settings are the stale ones


def test_baseline_offset_and_radar_repeat_via_cli(tmp_path, catalog_path):
    from typer.testing import CliRunner

    from nyceo.cli import app

    cfg_path = make_config(tmp_path, catalog_path)
    out = CliRunner().invoke(app, ["acquire", "--month", "2022-01", "-c", str(cfg_path)])
    assert out.exit_code == 0, out.output
    assert "b220_263" in out.output and "b220_265" in out.output and "done" in out.output
    cfg = load_config(cfg_path)
    ds = open_stack(cfg, "2022-01")
    x, y = chip_truth("r0220_c0263")
    s2 = ds.s2.sel(x=x[0], y=y[:, 0], method="nearest").values
    # 01-05 and 01-15 (baseline 03.01) and 01-26, 01-30 (04.00, +1000 DN in the files) agree.
    for t in range(4):
        assert np.array_equal(s2[t, 3], s2_value(3, x, y))
    prov = ds.attrs["provenance"]["blocks"]["b220_263"]
    assert prov["s2_dates"] == ["2022-01-05", "2022-01-15", "2022-01-26", "2022-01-30"]
    assert prov["s1"]["repeated"] and prov["s1"]["window_extra_days"] == 21
    assert sorted(set(prov["s1"]["dates"])) == ["2022-01-10", "2022-01-20"] and len(prov["s1"]["dates"]) == 4


def test_all_cloud_month_is_skipped_without_a_store(tmp_path, catalog_path):
    cfg = load_config(make_config(tmp_path, catalog_path))
    result = run_acquire(cfg, "2024-03")
    assert result["status"] == "skipped" and result["reason"] == "no_clear_s2"
    assert "0.0% clear" in result["detail"]
    month = Path(cfg.run.output_root, "2024-03")
    assert not (month / "stack.zarr").exists()
    skipped = list((month / "acquire").glob("*/skipped.json"))
    assert len(skipped) == 1 and json.loads(skipped[0].read_text())["reason"] == "no_clear_s2"
    assert acquire_status(cfg, "2024-03").state == "skipped"
    empty = run_acquire(cfg, "2023-05")  # no scene at all
    assert empty["status"] == "skipped" and empty["reason"] == "no_s2_scenes"


def test_corrupt_asset_then_resume_skips_finished_blocks(tmp_path):
    catalog = make_catalog(tmp_path / "scenes", JULY_S2[1:5], JULY_S1)
    cfg = load_config(make_config(tmp_path, catalog))
    bad_id = "S2B_MSIL2A_20240713T154809_N0510_R054_T18TWL_t1"
    bad = tmp_path / "scenes" / "s2" / bad_id / "B04.tif"
    good_bytes = bad.read_bytes()
    bad.write_bytes(b"II*\x00 this is not a GeoTIFF any more" * 10)
    with pytest.raises(AssetReadError) as err:
        run_acquire(cfg, "2024-07", catalog=StaticCatalog(catalog))
    msg = str(err.value)
    assert bad_id in msg and "'B04'" in msg and str(bad) in msg and "re-fetch" in msg
    status = acquire_status(cfg, "2024-07")
    assert status.state == "partial" and status.done == 1 and status.total == 2
    # Repair block 2's file; remove every source file of finished block 1: a re-read would fail.
    bad.write_bytes(good_bytes)
    removed = [d for kind in ("s2", "s1", "dem") for d in (tmp_path / "scenes" / kind).glob("*_t0*")]
    assert len(removed) == 4 + 4 + 1
    for scene_dir in removed:
        shutil.rmtree(scene_dir)
    result = run_acquire(cfg, "2024-07", catalog=StaticCatalog(catalog))
    assert result["status"] == "done" and result["blocks_resumed"] == 1 and result["blocks_done"] == 2
    ds = open_stack(cfg, "2024-07")
    x, y = chip_truth("r0220_c0263")
    s2 = ds.s2.sel(x=x[0], y=y[:, 0], method="nearest").values
    assert np.array_equal(s2[1, 3], s2_value(3, x, y))  # block 1's data survived the re-run


def test_chip_runs_group_consecutive_chips_per_row():
    from nyceo.acquire.block import chip_runs

    assert chip_runs([(1, 5), (1, 2), (0, 7), (1, 3)]) == [(0, 7, 1), (1, 2, 2), (1, 5, 1)]


def test_same_inputs_give_byte_identical_chunks(july, catalog_path, tmp_path):
    """A serial re-run with both chips in one block (no dask, other read windows and writes) writes
    the same S2/S1/flag chunk bytes as the dask run: the aligned reads do not depend on the block
    layout. The DEM is reprojected by GDAL, whose approximate transformer depends on the output
    extent: equal within a centimetre."""
    cfg, tmp, _, _ = july
    raw = yaml.safe_load((tmp / "config.yaml").read_text())
    raw["run"]["output_root"] = str(tmp_path / "again")
    raw["grid"]["block_size_chips"] = 16
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    again = load_config(tmp_path / "config.yaml")
    assert run_acquire(again, "2024-07")["blocks_done"] == 1
    first, second = (Path(c.run.output_root, "2024-07", "stack.zarr") for c in (cfg, again))
    for name in ("s2", "s1", "s2_valid", "s1_valid"):
        chunks = sorted(p.relative_to(first) for p in (first / name / "c").rglob("*") if p.is_file())
        assert len(chunks) == 2
        for rel in chunks:
            assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    dem = [open_stack(c, "2024-07").dem.sel(x=chip_truth("r0220_c0265")[0][0], method="nearest").values
           for c in (cfg, again)]
    assert np.isfinite(dem[0]).all() and np.allclose(dem[0], dem[1], atol=0.01)
