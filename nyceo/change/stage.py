"""The change stage: for each adapter, month M against M-1 (mom) and M-12 (yoy).

Per pair: choose the predecessor (``pairs``; typed skip otherwise), make sure the month's noise
floor is measured (``noise_floor.json``, cached by its key), gate the two months
(``gate``), publish the layers per borough and city (``publish``), the change areas
(``areas``), then ``record.json`` last: a pair whose record carries the key the configuration asks
for is current and skipped. Persistence (``persistence.json`` + ``<area>_persistence.tif``) is a
separate keyed output refreshed by every later run that sees a new neighbour month.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import Any

import fsspec
import numpy as np
import zarr

from nyceo.change import codes, layout
from nyceo.change.gate import MonthLayers, gate
from nyceo.change.noise import null_summary, thresholds_and_cdf
from nyceo.change.pairs import PairChoice, StoreInfo, choose, current_store
from nyceo.config import PipelineConfig
from nyceo.infer.engine import Predictor
from nyceo.io import missing_files, write_json_atomic
from nyceo.mosaic import layout as mlayout
from nyceo.mosaic.stage import publish as publish_staged
from nyceo.provenance import base_provenance

log = logging.getLogger("nyceo.change")


def read_json(path: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    try:
        with fsspec.open(path, "r", **(storage_options or {})) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_month(path: str, rows: slice = slice(None), cols: slice = slice(None)) -> MonthLayers:
    g = zarr.open_group(path, mode="r")
    return MonthLayers(np.asarray(g["class_map"][rows, cols]), np.asarray(g["probability"][:, rows, cols]),
                       np.asarray(g["confidence"][rows, cols]))


def georef(path: str) -> tuple[Any, Any]:
    """(transform, CRS) of a prediction store."""
    from nyceo.mosaic.predstore import _crs_of, _transform_of

    g = zarr.open_group(path, mode="r")
    return _transform_of(g, path), _crs_of(g, path)


def valid_chips(config: PipelineConfig, cur: StoreInfo, min_valid: float = 0.5) -> list[tuple[int, int]]:
    """Lattice (row, col) of the chips where the month's prediction covers >= ``min_valid`` of pixels."""
    from nyceo.grid import Lattice

    lat = Lattice.from_config(config.grid)
    res, size = lat.resolution_m, lat.chip_size_px
    row0 = round((lat.origin_y_m - (cur.grid["y0"] + res / 2)) / lat.chip_m)
    col0 = round((cur.grid["x0"] - res / 2 - lat.origin_x_m) / lat.chip_m)
    cmap = np.asarray(zarr.open_group(cur.path, mode="r")["class_map"][:]) != codes.NODATA
    h, w = cmap.shape
    frac = cmap.reshape(h // size, size, w // size, size).mean(axis=(1, 3))
    return [(row0 + int(r), col0 + int(c)) for r, c in zip(*np.nonzero(frac >= min_valid))]


def ensure_noise_floor(config: PipelineConfig, month: str, adapter: str, cur: StoreInfo,
                       runner_box: dict[str, Predictor | None]) -> dict[str, Any]:
    """The month's measured null for ``adapter`` (cached by key in ``noise_floor.json``)."""
    from nyceo.change.null_model import measure_null
    from nyceo.mosaic.layout import CITY_AREA

    nkey = layout.noise_key(config, adapter, cur.key)
    dest, so = layout.out(config, layout.noise_rel(month, adapter)), mlayout.storage_options(config)
    found = read_json(dest, so)
    if found and found.get("key") == nkey:
        return found
    runner = runner_box.get("runner")
    if runner is None:
        from nyceo.infer.stage import make_runner  # the real model (imports torch lazily)

        runner = runner_box["runner"] = make_runner(config)
    ident = runner.provenance(adapter).get("sha256")
    if ident is not None and dict(ident) != cur.sha256:
        raise ValueError(f"{month}/{adapter}: the runner's adapter files {ident} differ from those of the "
                         f"published store {cur.sha256}; the noise floor must come from the same model")
    sample = measure_null(config, month, adapter, valid_chips(config, cur), runner)
    bidx = layout.building_index(config, adapter)
    c = config.change
    summary = null_summary(sample.half_a, sample.half_b, sample.area_index, sample.area_slugs, CITY_AREA,
                           list(config.infer.adapters[adapter].classes), c.false_alarm_rate, c.min_confidence, bidx)
    record = {"key": nkey, "month": month, "adapter": adapter, "pred_key": cur.key, "adapter_sha256": cur.sha256,
              "method": c.noise.method, "null": "same month predicted from timesteps {first half} vs {second half}",
              "sample": {"chips": sample.chips, "n_chips": len(sample.chips), "fraction": c.noise.sample_fraction,
                         "seed": c.noise.seed, "chips_whose_halves_share_a_date": sample.chips_sharing_dates},
              **summary, "provenance": base_provenance(config, "change", month=month, adapter=adapter,
                                                       adapter_sha256=cur.sha256, key=nkey)}
    write_json_atomic(dest, record, so)
    return record


def expected_key(config: PipelineConfig, month: str, adapter: str, choice: PairChoice) -> str:
    nkey = None if choice.skipped else layout.noise_key(config, adapter, choice.current.key)
    prev = choice.previous.key if choice.previous else None
    return layout.pair_key(config, adapter, choice.pair, choice.current.key, prev, nkey, choice.skip_reason)


def pair_record(config: PipelineConfig, month: str, adapter: str, pair: str) -> dict[str, Any] | None:
    """The pair's record; its ``key`` is dropped when a file the record lists is gone (deleted by hand):
    the pair is then rebuilt, not served as current."""
    rec = read_json(layout.out(config, layout.pair_rel(month, adapter, pair, "record.json")),
                    mlayout.storage_options(config))
    if rec and missing_files([layout.out(config, r) for r in rec.get("files", [])], mlayout.storage_options(config)):
        rec = {k: v for k, v in rec.items() if k != "key"}
    return rec


def _rels(month: str, adapter: str, pair: str, layers: list[str], slugs: list[str]) -> dict[tuple[str, str], str]:
    return {(l, s): layout.pair_rel(month, adapter, pair, f"{s}_{l}.tif") for l in layers for s in slugs}


def _publish_layers(config: PipelineConfig, month: str, adapter: str, choice: PairChoice, layers: dict[str, np.ndarray],
                    key: str, prov: dict[str, Any]) -> tuple[list[str], dict[str, np.ndarray]]:
    """Stage and publish every layer's COGs and the transition quicklooks; (rels, clipped transitions)."""
    from nyceo.change.publish import layer_band, stage_layers, staging_dir, transition_quicklook
    from nyceo.mosaic.clip import configured_areas

    ad = config.infer.adapters[adapter]
    classes, colors = list(ad.classes), list(ad.colors)
    transform, crs = georef(choice.current.path)
    areas = configured_areas(config)
    rels = _rels(month, adapter, choice.pair, list(layers), list(areas))
    staging = staging_dir(layout.out(config, layout.pair_rel(month, adapter, choice.pair, "")))
    try:
        bands = {l: layer_band(l, adapter, classes, colors) for l in layers}
        staged, clipped = stage_layers(config, layers, areas, transform, crs, rels, bands, key, prov, staging)
        for slug, part in clipped.items():
            ql = staging / f"{slug}_ql.png"
            transition_quicklook(part, classes, colors, f"{areas[slug].name}: {adapter} change "
                                 f"{choice.previous.month} -> {month}", ql, config.mosaic.quicklook_max_px)
            staged.append((ql, layout.pair_rel(month, adapter, choice.pair, f"quicklook/{slug}_transition.png")))
        publish_staged(config, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(rels.values()), clipped


def compute_pair(config: PipelineConfig, month: str, adapter: str, choice: PairChoice, key: str,
                 noise: dict[str, Any]) -> dict[str, Any]:
    """Gate the pair, publish its COGs, quicklooks and areas; return its record (not yet written)."""
    from nyceo.change.areas import area_rows, write_tables
    from nyceo.mosaic.layout import CITY_AREA

    assert choice.previous is not None
    classes, bidx = list(config.infer.adapters[adapter].classes), layout.building_index(config, adapter)
    thr, cdf = thresholds_and_cdf(noise, CITY_AREA)
    res = gate(read_month(choice.previous.path), read_month(choice.current.path), thr,
               config.change.min_confidence, cdf, bidx)
    layers = {"transition": res.transition, "gain": res.gain, "loss": res.loss, "confidence": res.confidence}
    if bidx is not None:
        layers.update(building=res.building, building_dp=res.building_dp)
    prev = choice.previous.month
    prov = base_provenance(config, "change", month=month, adapter=adapter, pair=choice.pair, key=key,
                           previous_month=prev, pred_keys={month: choice.current.key, prev: choice.previous.key},
                           adapter_sha256=choice.current.sha256, noise_floor_key=noise["key"],
                           thresholds_u8=noise["thresholds_u8"])
    files, clipped = _publish_layers(config, month, adapter, choice, layers, key, prov)
    px_km2 = config.grid.resolution_m ** 2 / 1e6
    rows = [r for slug, part in clipped.items() for r in area_rows(slug, part, classes, noise, CITY_AREA, px_km2, bidx)]
    tables = [layout.pair_rel(month, adapter, choice.pair, n) for n in ("areas.csv", "areas.json")]
    write_tables(rows, layout.out(config, tables[0]), layout.out(config, tables[1]),
                 {"key": key, "month": month, "adapter": adapter, "pair": choice.pair, "previous_month": prev,
                  "pixel_km2": px_km2, "expected_false": "null false-change rate of the area x its valid pixels"},
                 mlayout.storage_options(config))
    return {"state": "done", "key": key, "month": month, "adapter": adapter, "pair": choice.pair,
            "previous_month": prev, "noise_floor": layout.noise_rel(month, adapter),
            "thresholds_u8": noise["thresholds_u8"],
            "changed_px": {slug: int((part < len(classes) ** 2).sum()) for slug, part in clipped.items()},
            "files": files + tables, "provenance": prov}


def run_pair(config: PipelineConfig, month: str, adapter: str, pair: str, cur: StoreInfo,
             runner_box: dict[str, Predictor | None], force: bool = False) -> dict[str, Any]:
    choice = choose(config, month, adapter, pair, cur)
    key = expected_key(config, month, adapter, choice)
    found = pair_record(config, month, adapter, pair)
    if not force and found and found.get("key") == key:
        return {**found, "cached": True}
    if choice.skipped:
        rec = {"state": "skipped", "key": key, "month": month, "adapter": adapter, "pair": pair,
               "reason": choice.skip_reason, "detail": choice.skip_detail,
               "previous_month": choice.previous.month if choice.previous else None,
               "provenance": base_provenance(config, "change", month=month, adapter=adapter, pair=pair, key=key)}
    else:
        noise = ensure_noise_floor(config, month, adapter, cur, runner_box)
        rec = compute_pair(config, month, adapter, choice, key, noise)
    write_json_atomic(layout.out(config, layout.pair_rel(month, adapter, pair, "record.json")), rec,
                      mlayout.storage_options(config))
    return {**rec, "cached": False}


def _brief(rec: dict[str, Any]) -> dict[str, Any]:
    """What a run reports per pair (the full record stays in record.json)."""
    keep = ("state", "cached", "key", "adapter", "pair", "previous_month", "reason", "detail", "changed_px",
            "thresholds_u8", "noise_floor")
    return {k: rec[k] for k in keep if k in rec}


def run_change(config: PipelineConfig, month: str, adapters: list[str] | None = None,
               runner: Predictor | None = None, force: bool = False) -> dict[str, Any]:
    """Bring every (or the named) adapter's change pairs of ``month`` up to date, then persistence
    of ``month`` and of the earlier months whose window ``month`` completes. Idempotent."""
    from nyceo.change.confirm import refresh_around

    names = adapters or layout.adapters(config)
    box: dict[str, Predictor | None] = {"runner": runner}
    out: dict[str, Any] = {}
    for adapter in names:
        cur = current_store(config, month, adapter)
        out[adapter] = {p: _brief(run_pair(config, month, adapter, p, cur, box, force)) for p in config.change.pairs}
        log.info("change %s/%s: %s", month, adapter, {p: r["state"] for p, r in out[adapter].items()})
    persistence = refresh_around(config, month, names)
    from nyceo.change.stac import update_catalog

    update_catalog(config, month, {a: {p: pair_record(config, month, a, p) or {} for p in out[a]} for a in names})
    recs = [r for pairs in out.values() for r in pairs.values()]
    skipped = sorted({f"{r['adapter']}/{r['pair']}: {r['reason']}" for r in recs if r["state"] == "skipped"})
    return {"status": "done", "cached": all(r["cached"] for r in recs), "reason": "; ".join(skipped),
            "month": month, "adapters": out, "persistence": persistence}
