"""Refresh the persistence output of a month's change pairs (rule in ``nyceo.change.persistence``).

Design (idempotent, keyed): the change layers of month M are fixed once made; their persistence
is a separate output ``persistence.json`` + ``<area>_persistence.tif`` in M's pair folder, whose
key is the pair's key plus the pred keys of the neighbour months it used. Every run of the stage
(for any month N) refreshes the persistence of N itself and of the months N-1 .. N-w whose window
N belongs to; a refresh whose key is unchanged writes nothing. So the output for M is always the
same function of the same inputs, whichever month's run wrote it, and a late or re-run month
(backfill in any order) brings its neighbours' confirmation up to date.
"""

from __future__ import annotations

import shutil
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import transform as window_transform

from nyceo.change import codes, layout, persistence
from nyceo.change.pairs import StoreInfo, store_info
from nyceo.config import PipelineConfig
from nyceo.contract import shift_month
from nyceo.io import write_json_atomic
from nyceo.mosaic import layout as mlayout
from nyceo.mosaic.clip import area_window, configured_areas
from nyceo.mosaic.cog import provenance_tags, write_cog
from nyceo.mosaic.layout import CITY_AREA
from nyceo.provenance import base_provenance


def _compatible(config: PipelineConfig, month: str, adapter: str, ref: StoreInfo) -> StoreInfo | None:
    info = store_info(config, month, adapter)
    if info is None or info.sha256 != ref.sha256 or info.grid != ref.grid or info.classes != ref.classes:
        return None
    return info


def neighbours(config: PipelineConfig, month: str, adapter: str, pair: str, ref: StoreInfo) -> dict[str, list[StoreInfo]]:
    """Published, compatible neighbour stores: mom {'after': consecutive M+1..}, yoy {'before', 'after'}."""
    p = config.change.persistence
    if pair == "mom":
        after = []
        for m in persistence.mom_neighbours(month, p.window_months):
            info = _compatible(config, m, adapter, ref)
            if info is None:
                break
            after.append(info)
        return {"before": [], "after": after}
    before, after = persistence.yoy_neighbours(month, p.yoy_neighbour_months)
    return {"before": [i for m in before if (i := _compatible(config, m, adapter, ref))],
            "after": [i for m in after if (i := _compatible(config, m, adapter, ref))]}


def _class_maps(infos: list[StoreInfo], window: Any) -> list[np.ndarray]:
    import zarr

    rows, cols = window.toslices()
    return [np.asarray(zarr.open_group(i.path, mode="r")["class_map"][rows, cols]) for i in infos]


def _publish_status(config: PipelineConfig, month: str, adapter: str, pair: str, status: np.ndarray, wt: Any,
                    crs: Any, classes: list[str], key: str, prov: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Write ``<area>_persistence.tif`` for every area (staged, then published); pixel counts per area."""
    from nyceo.change.publish import clip, layer_band, staging_dir
    from nyceo.mosaic.stage import publish as publish_staged

    band = layer_band("persistence", adapter, classes, [])
    staging, staged, counts = staging_dir(layout.out(config, layout.pair_rel(month, adapter, pair, ""))), [], {}
    try:
        for slug, area in configured_areas(config).items():
            part, awt, _ = clip(status, area, wt)
            dest = staging / f"{slug}_persistence.tif"
            write_cog(part, awt, crs, dest, band, blocksize_px=config.mosaic.blocksize_px,
                      compression=config.mosaic.compression, tags=provenance_tags(key, {**prov, "area": slug}))
            staged.append((dest, layout.pair_rel(month, adapter, pair, f"{slug}_persistence.tif")))
            n = np.bincount(part.ravel(), minlength=256)
            counts[slug] = {codes.PERSIST_NAMES[c]: int(n[c]) for c in codes.PERSIST_NAMES}
        publish_staged(config, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _read_cog(path: str) -> tuple[np.ndarray, Any]:
    """Band 1 and CRS of a published COG, local or remote (fsspec opener, configured options)."""
    from nyceo.io import is_remote

    if is_remote(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        with rasterio.open(p, opener=fs) as ds:
            return ds.read(1), ds.crs
    with rasterio.open(path) as ds:
        return ds.read(1), ds.crs


def refresh_pair(config: PipelineConfig, month: str, adapter: str, pair: str) -> dict[str, Any] | None:
    """Recompute the persistence of one done pair when its neighbour months changed; None if not done."""
    from nyceo.change.stage import georef, pair_record, read_json

    rec = pair_record(config, month, adapter, pair)
    ref = store_info(config, month, adapter)
    if not rec or rec.get("state") != "done" or ref is None:
        return None
    near = neighbours(config, month, adapter, pair, ref)
    used = {i.month: i.key for side in near.values() for i in side}
    key = layout.persistence_key(config, rec["key"], used)
    so, dest = mlayout.storage_options(config), layout.out(config, layout.pair_rel(month, adapter, pair, "persistence.json"))
    found = read_json(dest, so)
    if found and found.get("key") == key:
        return {**found, "cached": True}
    transition, crs = _read_cog(layout.out(config, layout.pair_rel(month, adapter, pair, f"{CITY_AREA}_transition.tif")))
    transform, _ = georef(ref.path)
    areas = configured_areas(config)
    h, w = (ref.grid["shape"][0], ref.grid["shape"][1])
    window = area_window(areas[CITY_AREA].geometry, transform, h, w)
    k, p = len(ref.classes), config.change.persistence
    if pair == "mom":
        status = persistence.mom_status(transition, k, _class_maps(near["after"], window), p.window_months)
    else:
        status = persistence.yoy_status(transition, k, _class_maps(near["before"], window),
                                        _class_maps(near["after"], window))
    prov = base_provenance(config, "change", month=month, adapter=adapter, pair=pair, key=key,
                           pair_key=rec["key"], neighbour_pred_keys=used, rule=p.model_dump(mode="json"))
    counts = _publish_status(config, month, adapter, pair, status, window_transform(window, transform), crs,
                             list(ref.classes), key, prov)
    out = {"key": key, "month": month, "adapter": adapter, "pair": pair, "pair_key": rec["key"],
           "neighbours": {side: [i.month for i in infos] for side, infos in near.items()},
           "window_complete": (len(near["after"]) >= p.window_months) if pair == "mom" else None,
           "pixels": counts, "provenance": prov}
    write_json_atomic(dest, out, so)
    return {**out, "cached": False}


def refresh_around(config: PipelineConfig, month: str, adapters: list[str]) -> dict[str, Any]:
    """Persistence of ``month`` and of the earlier months whose neighbour window contains it."""
    p = config.change.persistence
    span = max(p.window_months, p.yoy_neighbour_months)
    out: dict[str, Any] = {}
    for m in [month, *(shift_month(month, -i) for i in range(1, span + 1))]:
        for adapter in adapters:
            for pair in config.change.pairs:
                r = refresh_pair(config, m, adapter, pair)
                if r is not None:
                    out[f"{m}/{adapter}/{pair}"] = {"cached": r["cached"], "pixels": r["pixels"].get(CITY_AREA)}
    return out
