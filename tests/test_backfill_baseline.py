"""A backfill across the Sentinel-2 processing-baseline change (2022-01-25) stays consistent.

The embedded city writes scenes from 2022-01-25 on with BOA_ADD_OFFSET = +1000 DN and
``s2:processing_baseline`` 05.10 (before: 03.00), as Planetary Computer serves them. Backfilling
2022-01 and 2022-02 (grid + acquire, four Staten Island chips) must give stacks on one radiometric
scale: every observed-clear pixel is its scene's DN minus the scene's own offset (so a January scene
dated on/after 01-25 is treated like February's), and the two months' harmonized statistics agree.

Tolerance: TOL_DN = 150 DN, far below the 1000 DN offset. In the embedded city the only differences
between two clear views of a pixel are a per-scene gain ~ N(1, 0.02) (3 sigma = 6 % of the
brightest band medians, ~2300 DN -> ~140 DN) and seasonal greening, which is tiny from January to
February (season index 0.00-0.09 of its July maximum). Measured with this area: per-band medians of
the paired February - January composite difference are 2-9 DN, single January timesteps against the
February composite 1-47 DN; the raw (unharmonized) difference is 1000 DN plus that.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
import zarr
from rasterio.windows import from_bounds

from benchmarks.rerun_bench import TINY
from nyceo import paths
from nyceo.config import load_config
from tests.conftest import write_config

MONTHS = ("2022-01", "2022-02")
OFFSET_START = dt.date(2022, 1, 25)
BOA_ADD_OFFSET_DN = 1000
TOL_DN = 150
CHIP_PX = 224
EPOCH = dt.date(1970, 1, 1)


def scenes_by_date(store: str) -> dict[dt.date, dict]:
    """The month's searched Sentinel-2 items (plan.json), one per acquisition date."""
    plan = json.loads(next((Path(store).parent / "acquire").glob("*/plan.json")).read_text())
    out: dict[dt.date, dict] = {}
    for item in plan["items"]["s2"]:
        day = dt.date.fromisoformat(item["properties"]["datetime"][:10])
        assert day not in out, f"two Sentinel-2 scenes on {day}: {out[day]['id']}, {item['id']}"
        out[day] = item
    return out


def raw_window(item: dict, asset: str, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """The scene asset's digital numbers (as served, offset included) over ``bounds`` (EPSG:32618),
    at the asset's native resolution (10 or 20 m; the 20 m grid nests in the 10 m one)."""
    with rasterio.open(item["assets"][asset]["href"]) as src:
        assert src.crs.to_epsg() == 32618 and src.res in ((10.0, 10.0), (20.0, 20.0)), f"{item['id']} {asset}"
        return src.read(1, window=from_bounds(*bounds, transform=src.transform))


def chip_bounds(group: zarr.Group, r: int, c: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of the area's chip (r, c) from the store's pixel-centre coordinates."""
    x, y = group["x"][...], group["y"][...]
    minx, maxy = float(x[c * CHIP_PX]) - 5, float(y[r * CHIP_PX]) + 5
    return minx, maxy - CHIP_PX * 10, minx + CHIP_PX * 10, maxy


def area_bounds(group: zarr.Group) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of the whole stored area."""
    x, y = group["x"][...], group["y"][...]
    return float(x[0]) - 5, float(y[-1]) - 5, float(x[-1]) + 5, float(y[0]) + 5


def check_offsets_removed(group: zarr.Group, scenes: dict[dt.date, dict]) -> list[dt.date]:
    """Every chip x timestep: clear-observed B04 == its scene's DN - that scene's own offset, where
    the offset follows the scene's s2:processing_baseline. Returns the scene dates checked."""
    b04 = list(group["s2_band"][...]).index("B04")
    dates, seen = group["s2_date"][...], []
    for t in range(dates.shape[0]):
        for r in range(dates.shape[1]):
            for c in range(dates.shape[2]):
                day = EPOCH + dt.timedelta(days=int(dates[t, r, c]))
                item = scenes[day]
                offset = BOA_ADD_OFFSET_DN if float(item["properties"]["s2:processing_baseline"]) >= 4 else 0
                assert (offset > 0) == (day >= OFFSET_START), f"{item['id']}: baseline does not match its date"
                ys, xs = slice(r * CHIP_PX, (r + 1) * CHIP_PX), slice(c * CHIP_PX, (c + 1) * CHIP_PX)
                clear = group["s2_valid"][t, ys, xs] == 1
                stack = group["s2"][t, b04, ys, xs][clear].astype(np.int32)
                raw = raw_window(item, "B04", chip_bounds(group, r, c))[clear].astype(np.int32)
                assert clear.mean() > 0.1, f"{item['id']} chip ({r}, {c}): too few clear pixels to check"
                np.testing.assert_array_equal(stack, raw - offset, err_msg=f"{item['id']} chip ({r}, {c}) t={t}")
                seen.append(day)
    return sorted(set(seen))


def clear_s2(group: zarr.Group) -> np.ndarray:
    """s2 as float (time, band, y, x) with everything but observed-clear pixels (flag 1) as NaN."""
    s2 = group["s2"][...].astype(np.float32)
    s2[np.broadcast_to((group["s2_valid"][...] != 1)[:, None], s2.shape)] = np.nan
    return s2


def paired_median_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per band: median of (a - b) over pixels where both are finite. a, b: (band, y, x)."""
    d = (a - b).reshape(a.shape[0], -1)
    assert np.isfinite(d).sum(axis=1).min() > 10_000, "too few pixels observed clear in both"
    return np.nanmedian(d, axis=1)


def test_backfill_across_processing_baseline_change(prefect_api, tmp_path):
    from flows.backfill import backfill

    cfg = write_config(tmp_path, grid=dict(TINY["grid"]), acquire=dict(TINY["acquire"]),
                       catalog=dict(TINY["catalog"]), dask={"n_workers": 1})
    result = backfill(MONTHS[0], MONTHS[1], str(cfg), max_concurrent=2, stages=["grid", "acquire"])
    assert {r["month"]: r["status"] for r in result["months"]} == {m: "done" for m in MONTHS}

    config = load_config(cfg)
    stores = {m: paths.stack_store(config, m) for m in MONTHS}
    groups = {m: zarr.open_group(stores[m], mode="r") for m in MONTHS}
    scenes = {m: scenes_by_date(stores[m]) for m in MONTHS}

    # 1. every scene in the stacks had its own offset removed (January after 01-25 like February)
    used = {m: check_offsets_removed(groups[m], scenes[m]) for m in MONTHS}
    jan_pre = [d for d in used["2022-01"] if d < OFFSET_START]
    jan_post = [d for d in used["2022-01"] if d >= OFFSET_START]
    assert jan_pre and jan_post, f"January's stack should hold scenes on both sides of 01-25: {used['2022-01']}"
    # 2. the scenes as served really differ by the offset: a pre-change January scene vs February's
    jan, feb = groups["2022-01"], groups["2022-02"]
    area = area_bounds(jan)
    pair = scenes["2022-01"][jan_pre[-1]], scenes["2022-02"][used["2022-02"][-1]]
    raw_jan, raw_feb = (raw_window(i, "B04", area).astype(np.float32) for i in pair)
    clear = np.logical_and(*(np.isin(np.repeat(np.repeat(raw_window(i, "SCL", area), 2, 0), 2, 1),
                                     config.acquire.scl_not_clear, invert=True) for i in pair))
    assert clear.mean() > 0.1, f"{pair[0]['id']} and {pair[1]['id']} share too few clear pixels"
    raw_shift = float(np.median((raw_feb - raw_jan)[clear]))
    assert abs(raw_shift - BOA_ADD_OFFSET_DN) < TOL_DN, f"raw February - January B04: {raw_shift} DN"

    # 3. harmonized: the months' per-pixel clear composites agree band by band
    clear_jan, clear_feb = clear_s2(jan), clear_s2(feb)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels (never clear) stay NaN
        comp_jan, comp_feb = np.nanmedian(clear_jan, axis=0), np.nanmedian(clear_feb, axis=0)
    month_shift = paired_median_diff(comp_feb, comp_jan)
    assert np.all(np.abs(month_shift) < TOL_DN), f"harmonized February - January per band: {month_shift}"
    # ...and each January timestep (before and after 01-25) agrees with February's composite
    for t in range(clear_jan.shape[0]):
        shift = paired_median_diff(clear_jan[t], comp_feb)
        assert np.all(np.abs(shift) < TOL_DN), f"January t={t} - February composite per band: {shift}"
