"""Faults in the input scenes, through the acquisition stage's run on one chip (real GeoTIFFs, static STAC).

- NaN and +/-inf radar values: never stored as inf; a pixel bad on one date is filled from another
  date (flag 2, the true value); a pixel bad on every date is the documented nodata (flag 0, the bad
  band NaN, the other band's valid value kept).
- A Sentinel-2 scene in EPSG:32718 (UTM 18 South) while the lattice is EPSG:32618: reprojected onto the
  lattice, the stack holds the same ground values as a 32618 scene would. The same pixels labelled
  EPSG:32618 (wrong metadata) end in an error naming the scene, its files, the declared CRS and the fix.
- A scene band file cut short (header intact): an error naming the scene, the asset and the file.
- A stack chunk deleted by hand: infer refuses (naming the block and `nyceo acquire`), acquire rewrites
  exactly that block, byte-identical.
- A catalog without a DEM: the month is a typed skip (no_dem, naming the collection); the stack published
  earlier for that month (other acquire settings) stays published and byte-identical.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from affine import Affine

from catalogs.static import item_from_files, write_static_catalog
from nyceo.acquire import AssetReadError, run_acquire
from nyceo.acquire.contract import acquire_status
from nyceo.acquire.testing import S2Scene, s1_power, s2_value, write_scenes
from nyceo.config import load_config
from nyceo.grid import Lattice, parse_chip_id
from tests.conftest import REPO

CHIP = "r0220_c0265"
MARGIN_PX = 8
D = dt.date
S2 = [S2Scene(D(2024, 7, d), 0.0) for d in (8, 13, 18, 23)]
S1 = [D(2024, 6, 23), D(2024, 7, 5), D(2024, 7, 17), D(2024, 7, 29)]  # selected in this order
ONE_DATE_NAN = (slice(20, 40), slice(20, 40), 1)      # chip rows, cols, S1 date index
ONE_DATE_INF = (slice(60, 80), slice(60, 80), 2)
EVERY_DATE = (slice(100, 110), slice(100, 110))       # NaN on dates 0-2, -inf on date 3


def chip_tile() -> tuple[float, float, float, float]:
    minx, miny, maxx, maxy = Lattice(0.0, 5_017_600.0, 224, 10.0).chip_bounds(*parse_chip_id(CHIP))
    m = MARGIN_PX * 10.0
    return (minx - m, miny - m, maxx + m, maxy + m)


def chip_xy() -> tuple[np.ndarray, np.ndarray]:
    minx, _, _, maxy = Lattice(0.0, 5_017_600.0, 224, 10.0).chip_bounds(*parse_chip_id(CHIP))
    return np.meshgrid(minx + 10.0 * (np.arange(224) + 0.5), maxy - 10.0 * (np.arange(224) + 0.5))


def poke(path: Path, rows: slice, cols: slice, value: float) -> None:
    """Write ``value`` into a window (chip pixel coordinates) of a single-band GeoTIFF, in place."""
    with rasterio.open(path, "r+") as ds:
        data = ds.read(1)
        data[rows.start + MARGIN_PX:rows.stop + MARGIN_PX, cols.start + MARGIN_PX:cols.stop + MARGIN_PX] = value
        ds.write(data, 1)


def s1_file(root: Path, date: dt.date, pol: str = "vv") -> Path:
    return root / "s1" / f"S1A_IW_GRDH_1SDV_{date:%Y%m%d}T225412_t0_rtc" / f"{pol}.tif"


def to_utm_south(item, root: Path, label_epsg: int | None = None):
    """The same S2 scene rewritten in EPSG:32718 (same ground: northing + 10 000 km); ``label_epsg``
    makes its metadata claim another CRS (a mislabelled scene)."""
    files = {}
    for key, asset in item.assets.items():
        src_path = Path(asset.href)
        with rasterio.open(src_path) as src:
            data, t, nodata = src.read(1), src.transform, src.nodata
        dst = root / "s2_south" / item.id / src_path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(dst, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                           dtype=data.dtype, crs="EPSG:32718", nodata=nodata,
                           transform=Affine(t.a, t.b, t.c, t.d, t.e, t.f + 10_000_000.0)) as out:
            out.write(data, 1)
        files[key] = dst
    props = {k: v for k, v in item.properties.items() if not k.startswith("proj:")}  # proj:* from the files
    if label_epsg:
        props["proj:epsg"] = label_epsg
    return item_from_files(item.id, item.collection_id, item.datetime, files, properties=props)


def config_for(tmp: Path, catalog: Path, out: Path, name: str, **acquire: object) -> Path:
    raw = yaml.safe_load((REPO / "configs/demo.yaml").read_text())
    raw["run"] = {"name": "faults", "output_root": str(out)}
    raw["catalog"] = {"kind": "static", "url": str(catalog), "signing": "none"}
    raw["grid"]["block_size_chips"] = 1
    raw["acquire"] = {"chip_ids": [CHIP], **acquire}
    raw.pop("train", None)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Seeded scenes of one chip; radar with NaN/inf; catalogs: full, S2 in 32718, without DEM."""
    root = tmp_path_factory.mktemp("fault-scenes")
    items = write_scenes(root, [chip_tile()], S2, S1)
    rows, cols, t = ONE_DATE_NAN
    poke(s1_file(root, S1[t]), rows, cols, np.nan)
    rows, cols, t = ONE_DATE_INF
    poke(s1_file(root, S1[t], "vh"), rows, cols, np.inf)
    for t, value in enumerate([np.nan, np.nan, np.nan, -np.inf]):
        poke(s1_file(root, S1[t]), *EVERY_DATE, value)
    s2 = [i for i in items if i.collection_id == "sentinel-2-l2a"]
    others = [i for i in items if i.collection_id != "sentinel-2-l2a"]
    cats = {
        "full": write_static_catalog(items, root / "full", "full", "seeded scenes, radar with NaN/inf"),
        "south": write_static_catalog([to_utm_south(i, root) for i in s2] + others, root / "south",
                                      "south", "S2 scenes in EPSG:32718"),
        "mislabelled": write_static_catalog([to_utm_south(i, root, 32618) for i in s2[:1]] + others,
                                            root / "mislabelled", "mislabelled", "32718 pixels labelled 32618"),
        "no_dem": write_static_catalog([i for i in items if i.collection_id != "cop-dem-glo-30"],
                                       root / "nodem", "nodem", "no DEM item"),
    }
    return root, cats


@pytest.fixture(scope="module")
def full_run(scenes, tmp_path_factory):
    _, cats = scenes
    tmp = tmp_path_factory.mktemp("fault-full")
    cfg = load_config(config_for(tmp, cats["full"], tmp / "outputs", "full"))
    result = run_acquire(cfg, "2024-07")
    assert result["status"] == "done", result
    return cfg, tmp


def open_stack(cfg) -> xr.Dataset:
    return xr.open_zarr(f"{cfg.run.output_root}/2024-07/stack.zarr", consolidated=False, mask_and_scale=False)


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_nan_and_inf_radar_are_filled_or_flagged_nodata_never_stored(full_run):
    cfg, _ = full_run
    ds = open_stack(cfg)
    x, y = chip_xy()
    s1 = ds.s1.sel(x=x[0], y=y[:, 0], method="nearest").values        # (time, band, y, x) dB
    flags = ds.s1_valid.sel(x=x[0], y=y[:, 0], method="nearest").values
    truth = np.stack([10 * np.log10(s1_power(p, x, y)) for p in ("vv", "vh")])
    assert not np.isinf(s1).any()
    for rows, cols, t in (ONE_DATE_NAN, ONE_DATE_INF):
        assert (flags[t, rows, cols] == 2).all()                        # filled from another date
        assert np.allclose(s1[t][:, rows, cols], truth[:, rows, cols], atol=1e-4)
        others = [u for u in range(4) if u != t]
        assert (flags[others][:, rows, cols] == 1).all()
    rows, cols = EVERY_DATE
    assert (flags[:, rows, cols] == 0).all()                                       # documented nodata (flag 0)
    assert np.isnan(s1[:, 0, rows, cols]).all()                                    # vv: NaN on every date
    assert np.allclose(s1[:, 1, rows, cols], truth[1, rows, cols], atol=1e-4)     # vh had data: kept
    bad = np.zeros((224, 224), bool)
    for rows, cols, _ in (ONE_DATE_NAN, ONE_DATE_INF):
        bad[rows, cols] = True
    bad[EVERY_DATE] = True
    assert (flags[:, ~bad] == 1).all()
    assert np.allclose(s1[:, :, ~bad], truth[None][:, :, ~bad], atol=1e-4)


def test_scene_in_utm_south_lands_on_the_32618_lattice(scenes, tmp_path):
    _, cats = scenes
    cfg = load_config(config_for(tmp_path, cats["south"], tmp_path / "outputs", "south"))
    assert run_acquire(cfg, "2024-07")["status"] == "done"
    ds = open_stack(cfg)
    assert "32618" in ds.spatial_ref.attrs["crs_wkt"] or "UTM zone 18N" in ds.spatial_ref.attrs["crs_wkt"]
    x, y = chip_xy()
    s2 = ds.s2.sel(x=x[0], y=y[:, 0], method="nearest").values
    flags = ds.s2_valid.sel(x=x[0], y=y[:, 0], method="nearest").values
    assert (flags == 1).all()
    for b, band in enumerate(cfg.acquire.s2_bands):
        if band in ("B02", "B03", "B04", "B08"):  # 10 m bands: the same ground values, within 1 DN
            assert np.abs(s2[:, b].astype(int) - s2_value(b, x, y)[None]).max() <= 1, band


def test_scene_with_utm_south_pixels_labelled_32618_is_named_with_the_fix(scenes, tmp_path):
    _, cats = scenes
    cfg = load_config(config_for(tmp_path, cats["mislabelled"], tmp_path / "outputs", "mislabelled"))
    with pytest.raises(AssetReadError) as err:
        run_acquire(cfg, "2024-07")
    msg = str(err.value)
    assert "S2B_MSIL2A_20240708T154809" in msg and "declared CRS EPSG:32618" in msg
    assert "CRS metadata is probably wrong" in msg and "Fix proj:epsg" in msg and "s2_south" in msg
    assert not (tmp_path / "outputs" / "2024-07" / "stack.zarr.current").exists()   # nothing published


def test_missing_dem_is_a_typed_skip_and_keeps_the_published_stack(scenes, full_run):
    _, cats = scenes
    cfg, tmp = full_run
    out = Path(cfg.run.output_root)
    before = tree_hashes(out / "2024-07")
    # another acquire setting (a new stack key), so the month is searched again, in a catalog without DEM
    nodem = load_config(config_for(tmp, cats["no_dem"], out, "nodem", s2_max_scene_cloud_pct=80))
    result = run_acquire(nodem, "2024-07")
    assert result["status"] == "skipped" and result["reason"] == "no_dem"
    assert "cop-dem-glo-30" in result["detail"]
    after = tree_hashes(out / "2024-07")
    assert {k: v for k, v in after.items() if k in before} == before      # nothing earlier changed or lost
    assert all("skipped.json" in k for k in set(after) - set(before))     # only the skip record was added
    assert acquire_status(cfg, "2024-07").state == "current"
    assert open_stack(cfg).s2.shape[0] == 4


def test_truncated_scene_asset_is_named_and_nothing_is_published(tmp_path):
    items = write_scenes(tmp_path / "scenes", [chip_tile()], S2, S1)
    catalog = write_static_catalog(items, tmp_path / "scenes", "truncated", "one truncated band file")
    bad_id = f"S2B_MSIL2A_{S2[1].date:%Y%m%d}T154809_N0510_R054_T18TWL_t0"
    bad = tmp_path / "scenes" / "s2" / bad_id / "B04.tif"
    data = bad.read_bytes()
    bad.write_bytes(data[: int(len(data) * 0.6)])          # a download cut short: header intact
    cfg = load_config(config_for(tmp_path, catalog, tmp_path / "outputs", "truncated"))
    with pytest.raises(AssetReadError) as err:
        run_acquire(cfg, "2024-07")
    msg = str(err.value)
    assert bad_id in msg and "'B04'" in msg and str(bad) in msg and "re-fetch" in msg
    assert not (tmp_path / "outputs" / "2024-07" / "stack.zarr.current").exists()


def test_stack_chunk_deleted_by_hand_is_refused_by_infer_and_reacquired(full_run):
    """Before: infer read the missing chunk as nodata and predicted nothing there, silently."""
    from nyceo.infer import run_infer
    from nyceo.infer.store import StackStoreError
    from nyceo.infer.testing import BandStandIn

    cfg, _ = full_run
    store = Path(f"{cfg.run.output_root}/2024-07/stack.zarr").resolve()
    chunk = store / "s2" / "c" / "0" / "0" / "0" / "0"
    original = chunk.read_bytes()
    chunk.unlink()
    with pytest.raises(StackStoreError) as err:
        run_infer(cfg, "2024-07", ["lulc"], runner=BandStandIn(adapter_names=("lulc",)))
    msg = str(err.value)
    assert "is damaged" in msg and "s2/c/0/0/0/0" in msg and "nyceo acquire --month 2024-07" in msg
    assert not list((Path(cfg.run.output_root) / "2024-07").glob("pred/*"))  # nothing predicted
    result = run_acquire(cfg, "2024-07")                   # the fix the message names
    assert result["status"] == "done" and not result.get("already_published") and result["blocks_done"] == 1
    assert chunk.read_bytes() == original and acquire_status(cfg, "2024-07").state == "current"
