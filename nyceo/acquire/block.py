"""One processing block: choose its timesteps, read them onto the grid, harmonize, write chips."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pystac
import zarr
from pyproj import Transformer
from rasterio.enums import Resampling

from catalogs.base import SceneCatalog
from nyceo.acquire import harmonize as hz
from nyceo.acquire.errors import SkipReason, Skipped
from nyceo.acquire.load import GridSpec, read_date
from nyceo.acquire.select import group_by_date, intersecting, select_s1_dates, select_s2_dates
from nyceo.acquire.store import write_chip
from nyceo.config import PipelineConfig
from nyceo.grid import AreaGrid, Lattice, parse_chip_id

DB_UNITS = {"db", "decibel", "decibels"}


@dataclass(frozen=True)
class BlockJob:
    """What one block needs: its chips on the area grid and the candidate scenes of the month."""

    block_id: str
    chips: list[tuple[int, int]]
    area: AreaGrid
    month: str
    items: dict[str, list[pystac.Item]]
    epsg: int

    @property
    def spec(self) -> GridSpec:
        """Bounds of the block's selected chips (not of unselected neighbours)."""
        lat = self.area.lattice
        rows, cols = [r for r, _ in self.chips], [c for _, c in self.chips]
        minx, _, _, maxy = lat.chip_bounds(min(rows), min(cols))
        _, miny, maxx, _ = lat.chip_bounds(max(rows), max(cols))
        return GridSpec(self.epsg, lat.resolution_m, (minx, miny, maxx, maxy))


def make_job(plan: dict[str, Any], block_id: str, config: PipelineConfig) -> BlockJob:
    a = plan["area"]
    area = AreaGrid(a["row0"], a["col0"], a["n_rows"], a["n_cols"], Lattice.from_config(config.grid))
    chips = [parse_chip_id(c) for c in plan["blocks"][block_id]]
    items = {k: [pystac.Item.from_dict(d) for d in v] for k, v in plan["items"].items()}
    epsg = int(config.grid.crs.split(":")[1])
    return BlockJob(block_id, chips, area, plan["month"], items, epsg)


def lonlat_bbox(crs: str, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of projected ``bounds`` in EPSG:4326 (densified edges)."""
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    return tuple(float(v) for v in tr.transform_bounds(*bounds, densify_pts=21))  # type: ignore[return-value]


def _s1_in_db(item: pystac.Item, asset: str) -> bool:
    bands = item.assets[asset].extra_fields.get("raster:bands") or [{}]
    return str(bands[0].get("unit", "")).lower() in DB_UNITS


def _signed(catalog: SceneCatalog, groups: dict[dt.date, list[pystac.Item]], dates: Sequence[dt.date]
            ) -> dict[dt.date, list[pystac.Item]]:
    return {d: [catalog.sign(i) for i in groups[d]] for d in sorted(set(dates))}


def _clear_fractions(config: PipelineConfig, groups: dict[dt.date, list[pystac.Item]], spec: GridSpec
                     ) -> dict[dt.date, float]:
    """SCL clear fraction per date over the block, read coarse (nearest)."""
    acq = config.acquire
    coarse = spec.coarsened(acq.s2_selection_resolution_m)
    out = {}
    for d, items in groups.items():
        scl = read_date(items, ["SCL"], coarse, resampling=Resampling.nearest, dtype=np.uint8,
                        fill_value=0, threads=acq.read_threads)[0]
        out[d] = float(hz.scl_clear(scl, acq.scl_not_clear).mean())
    return out


def _read_s2(config: PipelineConfig, signed: dict[dt.date, list[pystac.Item]], dates: list[dt.date],
             spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Harmonized S2 (time, band, y, x) int16 and validity flags (time, y, x)."""
    acq = config.acquire
    h, w = spec.shape
    data = np.empty((len(dates), len(acq.s2_bands), h, w), dtype=np.int16)
    clear = np.empty((len(dates), h, w), dtype=bool)
    for d in sorted(set(dates)):
        items = signed[d]
        dn = read_date(items, acq.s2_bands, spec, resampling=Resampling.bilinear, dtype=np.uint16,
                       fill_value=0, threads=acq.read_threads)
        scl = read_date(items, ["SCL"], spec, resampling=Resampling.nearest, dtype=np.uint8,
                        fill_value=0, threads=acq.read_threads)[0]
        offset = acq.s2_offset_dn if hz.needs_offset(items[0], acq.s2_offset_start) else 0
        harmonized = hz.harmonize_s2(dn, offset)
        ok = hz.scl_clear(scl, acq.scl_not_clear) & (dn != 0).all(axis=0)
        del dn
        for t in (i for i, x in enumerate(dates) if x == d):
            data[t], clear[t] = harmonized, ok
    flags = hz.temporal_fill(data, clear, dates)
    return data, flags


def _read_s1(config: PipelineConfig, signed: dict[dt.date, list[pystac.Item]], dates: list[dt.date],
             spec: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """S1 backscatter in dB (time, band, y, x) float32 and validity flags (time, y, x)."""
    acq = config.acquire
    h, w = spec.shape
    data = np.empty((len(dates), len(acq.s1_bands), h, w), dtype=np.float32)
    for d in sorted(set(dates)):
        items = signed[d]
        raw = read_date(items, acq.s1_bands, spec, resampling=Resampling.bilinear, dtype=np.float32,
                        fill_value=np.nan, threads=acq.read_threads)
        db = raw if _s1_in_db(items[0], acq.s1_bands[0]) else hz.to_db(raw)
        for t in (i for i, x in enumerate(dates) if x == d):
            data[t] = db
    valid = np.isfinite(data).all(axis=1)
    flags = hz.temporal_fill(data, valid, dates)
    return data, flags


def _block_skip(reason: SkipReason, detail: str) -> Skipped:
    return Skipped(reason, detail)


def select_block(config: PipelineConfig, job: BlockJob, catalog: SceneCatalog, spec: GridSpec,
                 bbox_ll: tuple[float, float, float, float]) -> dict[str, Any] | Skipped:
    """Choose the block's S2 and S1 dates (S2 by SCL clear fraction) or say why it has none."""
    acq = config.acquire
    s2_groups = group_by_date(intersecting(job.items["s2"], bbox_ll))
    s1_groups = group_by_date(intersecting(job.items["s1"], bbox_ll))
    dem = intersecting(job.items["dem"], bbox_ll)
    if not s2_groups:
        return _block_skip(SkipReason.NO_S2_SCENES, f"no Sentinel-2 scene covers block {job.block_id}")
    s1 = select_s1_dates(list(s1_groups), job.month, acq.timesteps, acq.s1_widen_step_days,
                         acq.s1_max_widen_days)
    if s1 is None:
        return _block_skip(SkipReason.NO_S1_SCENES, f"no Sentinel-1 date within {acq.s1_max_widen_days} "
                           f"days of {job.month} covers block {job.block_id}")
    if not dem:
        return _block_skip(SkipReason.NO_DEM, f"no DEM item covers block {job.block_id}")
    s2_all = _signed(catalog, s2_groups, list(s2_groups))
    fractions = _clear_fractions(config, s2_all, spec)
    s2_dates = select_s2_dates(fractions, job.month, acq.timesteps, acq.s2_min_clear_fraction)
    if not s2_dates:
        best = max(fractions.values())
        return _block_skip(SkipReason.NO_CLEAR_S2, f"block {job.block_id}: the clearest of {len(fractions)} "
                           f"Sentinel-2 dates is {best:.1%} clear (SCL), below s2_min_clear_fraction="
                           f"{acq.s2_min_clear_fraction}")
    return {"s2_dates": s2_dates, "s2_signed": s2_all, "s2_clear": fractions, "s1": s1,
            "s1_signed": _signed(catalog, s1_groups, s1.dates), "dem": [catalog.sign(i) for i in dem]}


def chip_runs(chips: Sequence[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """(row, first col, n) for each run of consecutive selected chips along a row (sorted)."""
    runs: list[tuple[int, int, int]] = []
    for row, col in sorted(chips):
        if runs and runs[-1][0] == row and runs[-1][1] + runs[-1][2] == col:
            runs[-1] = (row, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((row, col, 1))
    return runs


def _write(store: str, job: BlockJob, spec_bounds: tuple[float, float, float, float],
           arrays: dict[str, np.ndarray], res: float) -> None:
    """Write the selected chips: one write per run of consecutive chips (zarr encodes its chunks
    concurrently), arrays opened once; unselected chips between runs are never touched."""
    group = zarr.open_group(store, mode="r+")
    targets = {name: group[name] for name in arrays}
    minx, _, _, maxy = spec_bounds
    size = job.area.lattice.chip_size_px
    for row, col, n in chip_runs(job.chips):
        cminx, _, _, cmaxy = job.area.lattice.chip_bounds(row, col)
        y0, x0 = round((maxy - cmaxy) / res), round((cminx - minx) / res)
        local = (slice(y0, y0 + size), slice(x0, x0 + n * size))
        ys, xs = job.area.chip_slices(row, col)
        region = (ys, slice(xs.start, xs.start + n * size))
        write_chip(targets, region, {k: v[(Ellipsis, *local)] for k, v in arrays.items()})


def run_block(config: PipelineConfig, job: BlockJob, catalog: SceneCatalog, store: str) -> dict[str, Any]:
    """Process one block end to end; return its record (done with dates and scenes, or skipped)."""
    t0 = time.perf_counter()
    spec = job.spec
    chosen = select_block(config, job, catalog, spec, lonlat_bbox(config.grid.crs, spec.bounds))
    if isinstance(chosen, Skipped):
        return {"block_id": job.block_id, **chosen.to_dict(), "chips": len(job.chips)}
    s1 = chosen["s1"]
    s2, s2_flags = _read_s2(config, chosen["s2_signed"], chosen["s2_dates"], spec)
    s1_data, s1_flags = _read_s1(config, chosen["s1_signed"], s1.dates, spec)
    dem = read_date(chosen["dem"], ["data"], spec, resampling=Resampling.bilinear, dtype=np.float32,
                    fill_value=np.nan, threads=config.acquire.read_threads)[0]
    _write(store, job, spec.bounds, {"s2": s2, "s2_valid": s2_flags, "s1": s1_data, "s1_valid": s1_flags,
                                     "dem": dem}, spec.resolution_m)
    scenes = lambda groups, dates: {d.isoformat(): [i.id for i in groups[d]] for d in sorted(set(dates))}  # noqa: E731
    return {
        "block_id": job.block_id, "status": "done", "chips": len(job.chips),
        "s2_dates": [d.isoformat() for d in chosen["s2_dates"]],
        "s2_clear_fraction": {d.isoformat(): round(f, 4) for d, f in chosen["s2_clear"].items()},
        "s2_scenes": scenes(chosen["s2_signed"], chosen["s2_dates"]),
        "s1": s1.to_dict(), "s1_scenes": scenes(chosen["s1_signed"], s1.dates),
        "dem_scenes": [i.id for i in chosen["dem"]],
        "s2_clear_px_fraction": float((s2_flags == hz.FLAG_CLEAR).mean()),
        "s2_filled_px_fraction": float((s2_flags == hz.FLAG_FILLED).mean()),
        "pixels": int(spec.shape[0] * spec.shape[1]), "elapsed_s": round(time.perf_counter() - t0, 3),
    }
