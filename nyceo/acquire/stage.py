"""The acquisition stage: plan (search once), blocks (in parallel), finalize; status.

No Prefect here: ``tasks/acquire.py`` wraps :func:`plan_acquire`, :func:`acquire_block` and
:func:`finalize_acquire`; :func:`run_acquire` runs them all, on a dask ``distributed.Client``
(worker processes) when one is given.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import fsspec

import geopandas as gpd
import numpy as np
import pystac

from catalogs.base import SceneCatalog
from nyceo import chunks, paths, versioned
from nyceo.acquire import store as st
from nyceo.acquire.block import lonlat_bbox, make_job, run_block
from nyceo.acquire.errors import AcquireError, SkipReason, Skipped
from nyceo.acquire.select import search_month
from nyceo.config import PipelineConfig
from nyceo.grid import AreaGrid, Lattice, blocks_for_chips, parse_chip_id
from nyceo.io import write_json_atomic
from nyceo.keys import stack_key
from nyceo.provenance import base_provenance

if TYPE_CHECKING:
    from distributed import Client

ProgressFn = Callable[[dict[str, Any]], None]
STACK_NDIM = {"s2": 4, "s1": 4, "dem": 2, "s2_valid": 3, "s1_valid": 3}
SELECTION_POLICY = {
    "s2": "per block: the T dates with the highest SCL clear fraction (>= s2_min_clear_fraction) among "
          "scenes with eo:cloud_cover <= s2_max_scene_cloud_pct; fewer usable dates -> nearest repeated",
    "s1": "dates in the month (spread evenly if more than T); fewer -> window widened by "
          "s1_widen_step_days up to s1_max_widen_days on both sides, then nearest dates repeated",
    "dem": "static: every intersecting item mosaicked; stored once (y, x), repeat over time when reading",
    "fill": "invalid pixels filled from the nearest clear timestep (flag 2); the rest flagged 0",
}


def default_catalog(config: PipelineConfig) -> SceneCatalog:
    from catalogs import open_catalog

    return open_catalog(config.catalog)


def acquire_chips(config: PipelineConfig) -> gpd.GeoDataFrame:
    """The grid's chips, restricted to ``acquire.chip_ids`` when given."""
    from nyceo.grid_stage import make_grid_cached

    chips = make_grid_cached(config)
    wanted = config.acquire.chip_ids
    if wanted:
        unknown = sorted(set(wanted) - set(chips["chip_id"]))
        if unknown:
            raise AcquireError(
                f"acquire.chip_ids {unknown[:5]} are not chips of the grid over {config.grid.boroughs}; "
                "take IDs from `nyceo grid` output (outputs/grid/chips.parquet)"
            )
        chips = chips[chips["chip_id"].isin(wanted)].reset_index(drop=True)
    return chips


@dataclass(frozen=True)
class Build:
    """Where the stack of a month and configuration is built: ``<month>/stack@<k16>.zarr``, k16 being
    the fingerprint key (grid, catalog identity, acquire settings, month, area); published as
    ``<month>/stack.zarr`` once complete (``nyceo.versioned``)."""

    final: str
    path: str
    fp: dict[str, Any]
    key: str
    area: AreaGrid


def locate(config: PipelineConfig, month: str) -> Build:
    paths.check_month(month)
    area = AreaGrid.from_chips(acquire_chips(config), Lattice.from_config(config.grid))
    fp = st.fingerprint(config, month, area)
    key = st.fingerprint_hash(fp)
    final = paths.stack_store(config, month)
    return Build(final, versioned.version_path(final, key), fp, key, area)


def skipped_path(build: Build) -> str:
    return st.side_path(build.path, "skipped.json")


def _record_skip(build: Build, month: str, skip: Skipped) -> dict[str, Any]:
    st.remove_store(build.path)
    out = {"month": month, "fingerprint_key": build.key, **skip.to_dict()}
    write_json_atomic(skipped_path(build), out)
    return out


def _month_skip(found: dict[str, list[pystac.Item]], config: PipelineConfig, month: str) -> Skipped | None:
    acq = config.acquire
    if not found["s2"]:
        return Skipped(SkipReason.NO_S2_SCENES, f"no {config.catalog.s2_collection} scene of {month} over the "
                       f"area in the archive with eo:cloud_cover <= {acq.s2_max_scene_cloud_pct}")
    if not found["s1"]:
        return Skipped(SkipReason.NO_S1_SCENES, f"no {config.catalog.s1_collection} scene within "
                       f"{acq.s1_max_widen_days} days of {month}")
    if not found["dem"]:
        return Skipped(SkipReason.NO_DEM, f"no {config.catalog.dem_collection} item covers the area")
    return None


def _item_dict(item: pystac.Item) -> dict[str, Any]:
    try:
        item.make_asset_hrefs_absolute()
    except (ValueError, TypeError):
        pass  # no self link: hrefs are already absolute
    return item.to_dict(transform_hrefs=False)


def plan_acquire(config: PipelineConfig, month: str, catalog: SceneCatalog | None = None) -> dict[str, Any]:
    """Search the month's scenes once and create the build's store, or reuse it (resume).

    Returns {"status": "planned", "store", "blocks", "done"}, {"status": "current"} when the
    published stack already has this fingerprint, or a skipped record (no store).
    """
    b = locate(config, month)
    if versioned.read_pointer(b.final) and versioned.read_pointer(b.final).get("fingerprint") == b.key:
        from nyceo.acquire.contract import damaged_blocks, invalidate_blocks

        damaged = damaged_blocks(config, month)  # chunk files deleted or resized by hand
        if not damaged:
            return {"status": "current", "store": b.final, "build": b.path}
        invalidate_blocks(config, month, sorted(damaged))  # unpublished; those blocks are acquired again
    chips = acquire_chips(config)
    blocks = {blk.block_id: list(blk.chip_ids) for blk in blocks_for_chips(chips, config.grid.block_size_chips)}
    exists = st.check_compatible(b.path, b.fp)
    plan = st.read_side_json(b.path, "plan.json") if exists else None
    if plan is None:
        catalog = catalog or default_catalog(config)
        bbox_ll = lonlat_bbox(config.grid.crs, b.area.bounds)
        found = search_month(catalog, config, bbox_ll, month)
        skip = _month_skip(found, config, month)
        if skip is not None:
            return _record_skip(b, month, skip)
        st.remove_file(skipped_path(b))  # an earlier skip no longer holds
        st.create_store(b.path, config, b.area, b.fp)
        plan = {"month": month, "catalog": catalog.name, "bbox_lonlat": bbox_ll,
                "area": b.fp["area"], "blocks": blocks,
                "items": {k: [_item_dict(i) for i in v] for k, v in found.items()}}
        st.write_side_json(b.path, plan, "plan.json")
    done = sorted(st.block_records(b.path))
    return {"status": "planned", "store": b.path, "blocks": sorted(plan["blocks"]), "done": done,
            "scenes": {k: len(v) for k, v in plan["items"].items()}}


def acquire_block(config: PipelineConfig, month: str, block_id: str,
                  catalog: SceneCatalog | None = None, store: str | None = None) -> dict[str, Any]:
    """Acquire one block of the build ``store`` (default: this configuration's build), skipped at
    once if already recorded; return its small record."""
    store = store or locate(config, month).path
    records = st.read_side_json(store, "blocks", f"{block_id}.json")
    if records is not None:
        return {**records, "resumed": True}
    plan = st.read_side_json(store, "plan.json")
    if plan is None:
        raise AcquireError(f"{store} has no acquisition plan; run plan_acquire (or `nyceo acquire`) first")
    if block_id not in plan["blocks"]:
        raise AcquireError(f"block {block_id} is not in the plan of {store}; blocks: {sorted(plan['blocks'])[:8]}")
    job = make_job(plan, block_id, config)
    record = run_block(config, job, catalog or default_catalog(config), store)
    # The persisted record is a pure function of the inputs (byte-identical on a re-run); the
    # wall time is telemetry and is only returned. It lists the chunk files the block wrote.
    persisted = {k: v for k, v in record.items() if k != "elapsed_s"}
    a = job.area
    persisted["chunks"] = chunks.manifest(store, STACK_NDIM, [(r - a.row0, c - a.col0) for r, c in job.chips])
    st.write_side_json(store, persisted, "blocks", f"{block_id}.json")
    return {**record, "resumed": False}


def _date_arrays(plan: dict[str, Any], records: dict[str, dict[str, Any]], timesteps: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    a = plan["area"]
    s2 = np.full((timesteps, a["n_rows"], a["n_cols"]), st.DATE_FILL, dtype=np.int32)
    s1 = s2.copy()
    epoch = dt.date(1970, 1, 1)
    days = lambda ds: [(dt.date.fromisoformat(d) - epoch).days for d in ds]  # noqa: E731
    for bid, rec in records.items():
        if rec.get("status") != "done":
            continue
        for cid in plan["blocks"][bid]:
            r, c = parse_chip_id(cid)
            s2[:, r - a["row0"], c - a["col0"]] = days(rec["s2_dates"])
            s1[:, r - a["row0"], c - a["col0"]] = days(rec["s1"]["dates"])
    return s2, s1


def finalize_acquire(config: PipelineConfig, month: str, store: str | None = None) -> dict[str, Any]:
    """After every block: per-chip dates, provenance, content key; publish the build as stack.zarr."""
    b = locate(config, month)
    store = store or b.path
    if store == b.path and (versioned.read_pointer(b.final) or {}).get("fingerprint") == b.key:
        ptr = versioned.read_pointer(b.final)
        return {"status": "done", "store": b.final, "key": ptr["key"], "blocks_done": None, "blocks_skipped": None,
                "scenes": None, "already_published": True}
    plan = st.read_side_json(store, "plan.json")
    if plan is None:
        raise AcquireError(f"{store} has no acquisition plan; run `nyceo acquire` for {month}")
    records = st.block_records(store)
    missing = sorted(set(plan["blocks"]) - set(records))
    if missing:
        raise AcquireError(f"{len(missing)} block(s) of {store} are not finished ({missing[:5]}); "
                           "re-run `nyceo acquire` to complete them")
    done = {k: r for k, r in records.items() if r["status"] == "done"}
    if not done:
        reasons = Counter(r["reason"] for r in records.values())
        reason = SkipReason(reasons.most_common(1)[0][0])
        details = "; ".join(sorted({r["detail"] for r in records.values()})[:3])
        return _record_skip(b, month, Skipped(reason, details))
    s2_dates, s1_dates = _date_arrays(plan, records, config.acquire.timesteps)
    st.write_dates(store, "s2_date", s2_dates)
    st.write_dates(store, "s1_date", s1_dates)
    a = plan["area"]
    st.write_chip_coords(store, AreaGrid(a["row0"], a["col0"], a["n_rows"], a["n_cols"],
                                         Lattice.from_config(config.grid)))
    scenes = sorted({s for r in done.values() for k in ("s2_scenes", "s1_scenes")
                     for ids in r[k].values() for s in ids} | {s for r in done.values() for s in r["dem_scenes"]})
    offered = sorted(i["id"] for items in plan["items"].values() for i in items)
    content_key = stack_key(b.fp, offered)
    prov = base_provenance(config, "acquire", month=month, catalog=plan["catalog"],
                           selection_policy=SELECTION_POLICY, scene_ids=scenes, inputs_key=content_key,
                           fingerprint_key=b.key,
                           blocks={k: {x: r.get(x) for x in ("status", "reason", "s2_dates", "s2_scenes", "s1",
                                                             "s1_scenes", "dem_scenes", "s2_clear_fraction")
                                       if x in r} for k, r in sorted(records.items())})
    st.set_attrs(store, provenance=prov, inputs_key=content_key)
    st.write_side_json(store, {"complete": True, "blocks_done": len(done)}, "complete.json")
    publish_stack(b, content_key)
    return {"status": "done", "store": b.final, "key": content_key, "blocks_done": len(done),
            "blocks_skipped": len(records) - len(done), "scenes": len(scenes)}


def publish_stack(b: Build, content_key: str) -> None:
    """Swap the pointer (and local link) to this build; then drop other builds and their side folders."""
    versioned.publish(b.final, content_key, build=b.path, extra={"fingerprint": b.key})
    side_root = st.side_path(b.path).rstrip("/").rsplit("/", 1)[0]
    fs, p = fsspec.core.url_to_fs(side_root)
    for entry in (fs.ls(p, detail=False) if fs.exists(p) else []):
        if entry.rstrip("/").rsplit("/", 1)[-1] not in (b.key[:versioned.KEY_CHARS],):
            fs.rm(entry, recursive=True)


def _block_entry(config: PipelineConfig, month: str, block_id: str, catalog: SceneCatalog | None,
                 store: str) -> dict[str, Any]:
    return acquire_block(config, month, block_id, catalog, store)


def run_acquire(config: PipelineConfig, month: str, client: "Client | None" = None,
                catalog: SceneCatalog | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Plan, acquire every unfinished block (in parallel on ``client`` when given), finalize."""
    planned = plan_acquire(config, month, catalog)
    if planned["status"] == "current":
        return {"status": "done", "store": planned["store"], "blocks_done": 0, "blocks_skipped": 0,
                "blocks_resumed": 0, "already_published": True}
    if planned["status"] != "planned":
        return planned
    todo = [b for b in planned["blocks"] if b not in set(planned["done"])]
    report = progress or (lambda rec: None)
    if client is None:
        for bid in todo:
            report(acquire_block(config, month, bid, catalog, planned["store"]))
    else:
        from distributed import as_completed

        futures = [client.submit(_block_entry, config, month, bid, catalog, planned["store"],
                                 key=f"acquire-{month}-{bid}", pure=False) for bid in todo]
        for fut in as_completed(futures):
            report(fut.result())
    result = finalize_acquire(config, month, planned["store"])
    result["blocks_resumed"] = len(planned["done"])
    return result
