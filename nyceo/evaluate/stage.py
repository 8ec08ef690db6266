"""The evaluate stage: a month's published prediction stores against configured references.

For every (adapter, reference) pair — a reference lists the adapters it evaluates — whose
prediction store is published (``nyceo.infer.contract.published_pred``): load the reference onto
the store's grid, count one confusion matrix per chip and borough (pixel-centre rule on the DCP
polygons) over the evaluated chips, derive the metrics, the area-weighted estimate (Olofsson et
al. 2014), the threshold sweep (adapters in ``evaluate.sweep_classes``) and the probes, and write
everything under ``<output_root>/<YYYY-MM>/eval/<adapter>/<reference>/`` (report.py). A pair whose
``metrics.json`` carries the pair's key is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.evaluate import metrics as M
from nyceo.evaluate.probes import applies, evaluate_probe, load_probes, probe_mask
from nyceo.evaluate.reference import EvaluateError, ReferenceOnGrid, reference_identity, to_adapter_classes
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.contract import published_pred
from nyceo.io import join, sha256_file
from nyceo.keys import digest

CODE_VERSION = "1"


def eval_dir(config: PipelineConfig, month: str, adapter: str, reference: str) -> str:
    return join(paths.month_dir(config, month), "eval", adapter, reference)


def pairs(config: PipelineConfig, adapters: list[str] | None = None,
          references: list[str] | None = None) -> list[tuple[str, str]]:
    """(adapter, reference) pairs the configuration asks for, optionally filtered."""
    refs = config.evaluate.references
    unknown = [r for r in references or [] if r not in refs]
    if unknown:
        raise EvaluateError(f"unknown reference(s) {unknown}; evaluate.references has {sorted(refs)}")
    out = []
    for name, ref in refs.items():
        for a in ref.adapters:
            if a not in config.infer.adapters:
                raise EvaluateError(f"evaluate.references.{name}.adapters names '{a}', which is not in "
                                    f"infer.adapters {sorted(config.infer.adapters)}")
            if (adapters is None or a in adapters) and (references is None or name in references):
                out.append((a, name))
    evaluated = {a for ref in refs.values() for a in ref.adapters}
    if adapters is not None and [a for a in adapters if a not in evaluated]:
        raise EvaluateError(f"adapter(s) {[a for a in adapters if a not in evaluated]} have no reference; "
                            f"evaluated adapters are {sorted(evaluated)} (evaluate.references.<name>.adapters)")
    return out


def store_area(store_path: str, lattice: Lattice) -> AreaGrid:
    from nyceo.infer.store import _area_from_coords

    g = zarr.open_group(store_path, mode="r")
    return _area_from_coords(store_path, g["y"][:], g["x"][:], lattice)


def _probes_digest(config: PipelineConfig) -> str | None:
    f = config.evaluate.probes_file
    return sha256_file(f) if f else None


def evaluate_settings(config: PipelineConfig, adapter: str, reference: str) -> dict[str, Any]:
    """Settings that change this pair's outputs (reference remap/nodata/rules, sweep, probes, chips)."""
    ev = config.evaluate
    ref = ev.references[reference].model_dump(mode="json", exclude={"adapters", "path", "stac_url"})
    return {"reference": ref, "sweep_class": ev.sweep_classes.get(adapter), "thresholds": ev.sweep_thresholds,
            "confidence": ev.confidence_level, "probes": _probes_digest(config),
            "classes": config.infer.adapters[adapter].classes, "chip_ids": sorted(config.acquire.chip_ids),
            "boroughs": config.grid.boroughs}


def pair_key(config: PipelineConfig, month: str, adapter: str, reference: str,
             pred: tuple[str, str] | None = None) -> str | None:
    """digest(pred key, reference identity, evaluate settings, code version) of the prediction store
    ``pred`` ((path, pred key); default: the published one); None when there is no store."""
    found = pred or published_pred(config, month, adapter)
    if found is None:
        return None
    store, pkey = found
    ident = reference_identity(reference, config, store_area(store, Lattice.from_config(config.grid)))
    return digest({"stage": "evaluate", "code": CODE_VERSION, "pred": pkey, "reference": ident,
                   "settings": evaluate_settings(config, adapter, reference)})


# ---- computing ------------------------------------------------------------------------------------
@dataclass
class PredArrays:
    classes: list[str]
    class_map: np.ndarray
    confidence: np.ndarray
    group: Any
    provenance: dict[str, Any]


def read_pred(store: str, config: PipelineConfig, adapter: str) -> PredArrays:
    import json

    g = zarr.open_group(store, mode="r")
    classes = [str(c) for c in np.asarray(g["class"][:]).tolist()]
    want = config.infer.adapters[adapter].classes
    if classes != list(want):
        raise EvaluateError(f"prediction store {store} has classes {classes}, infer.adapters.{adapter}.classes "
                            f"is {want}; re-run infer or fix the config")
    prov = g.attrs.get("provenance", {})
    prov = json.loads(prov) if isinstance(prov, str) else dict(prov)
    return PredArrays(classes, np.asarray(g["class_map"][:]), np.asarray(g["confidence"][:]), g, prov)


def evaluated_chips(config: PipelineConfig, area: AreaGrid) -> Any:
    """Chips of the grid index inside the store's area (and in acquire.chip_ids when set)."""
    from nyceo.grid_stage import make_grid, read_grid

    try:
        chips = read_grid(paths.grid_index(config))
    except FileNotFoundError:
        chips = make_grid(config)
    inside = ((chips["row"] >= area.row0) & (chips["row"] < area.row0 + area.n_rows)
              & (chips["col"] >= area.col0) & (chips["col"] < area.col0 + area.n_cols))
    chips = chips[inside]
    if config.acquire.chip_ids:
        chips = chips[chips["chip_id"].isin(config.acquire.chip_ids)]
    if chips.empty:
        raise EvaluateError("no chip of the grid index lies inside the prediction store; re-run grid and infer")
    return chips.reset_index(drop=True)


def borough_zones(config: PipelineConfig, area: AreaGrid) -> tuple[np.ndarray, dict[int, str]]:
    """uint8 borough code per pixel (pixel-centre rule), 0 outside every borough."""
    from rasterio.features import rasterize

    from nyceo.boundaries import load_boroughs

    b = load_boroughs(config.grid.crs)
    zones = rasterize(zip(b.geometry.values, b["BoroCode"].astype(int)), out_shape=(area.height_px, area.width_px),
                      transform=area.transform, fill=0, all_touched=False, dtype="uint8")
    return zones, {int(c): str(n) for c, n in zip(b["BoroCode"], b["BoroName"])}


def _chip_row(chip: Any, zc: M.ZoneCounts, classes: list[str], conf: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    rep = M.class_metrics(zc.matrix, classes)
    valid = pred != M.NODATA
    row = {"chip_id": chip.chip_id, "row": int(chip.row), "col": int(chip.col), "boroughs": chip.boroughs,
           "evaluated_px": rep["evaluated_px"], "map_nodata_px": zc.map_nodata_px,
           "reference_nodata_px": zc.ref_nodata_px, "overall_accuracy": rep["overall_accuracy"], "miou": rep["miou"],
           "mean_confidence": float(conf[valid].mean() / 254) if valid.any() else None}
    for name, v in rep["classes"].items():
        row[f"iou_{name}"] = v["iou"]
        row[f"reference_px_{name}"] = v["reference_px"]
        row[f"map_px_{name}"] = v["map_px"]
    return row


def compute(config: PipelineConfig, adapter: str, pred: PredArrays, ref: ReferenceOnGrid, area: AreaGrid,
            chips: Any) -> dict[str, Any]:
    """Every figure of one pair (no writing)."""
    classes, k = pred.classes, len(pred.classes)
    refc = to_adapter_classes(ref, classes)
    frac = to_adapter_classes(ref, classes, "fraction_classes") if ref.fraction_classes is not None else None
    zones, names = borough_zones(config, area)
    sweep_cls = config.evaluate.sweep_classes.get(adapter)
    if sweep_cls is not None and sweep_cls not in classes:
        raise EvaluateError(f"evaluate.sweep_classes.{adapter} is '{sweep_cls}', not a class of {classes}")
    city, frac_city = M.ZoneCounts.empty(k), M.ZoneCounts.empty(k)
    boroughs = {n: M.ZoneCounts.empty(k) for n in names.values()}
    hist_pos, hist_neg = np.zeros(255, np.int64), np.zeros(255, np.int64)
    in_chips = np.zeros(refc.shape, dtype=bool)
    rows = []
    for chip in chips.itertuples():
        ys, xs = area.chip_slices(int(chip.row), int(chip.col))
        in_chips[ys, xs] = True
        r, p, z = refc[ys, xs], pred.class_map[ys, xs], zones[ys, xs]
        zc = M.count(r, p, k)
        city += zc
        codes = np.unique(z)
        if len(codes) == 1 and codes[0] > 0:  # the whole chip in one borough: its counts are the chip's
            boroughs[names[int(codes[0])]] += zc
        else:
            for code in codes[codes > 0]:
                boroughs[names[int(code)]] += M.count(r[z == code], p[z == code], k)
        if frac is not None:
            frac_city += M.count(frac[ys, xs], p, k)
        if sweep_cls is not None:
            prob = np.asarray(pred.group["probability"][classes.index(sweep_cls), ys, xs])
            hp, hn = M.sweep_histograms(prob, r == classes.index(sweep_cls), r != M.NODATA)
            hist_pos += hp
            hist_neg += hn
        rows.append(_chip_row(chip, zc, classes, pred.confidence[ys, xs], p))
    res = config.grid.resolution_m
    out: dict[str, Any] = {
        "city": M.zone_report(city, classes),
        "boroughs": {n: M.zone_report(zc, classes) for n, zc in boroughs.items() if zc.matrix.sum() or zc.map_px.sum()},
        "area_estimate": M.olofsson(city.matrix.T, city.map_px, classes, config.evaluate.confidence_level,
                                    pixel_area=res * res / 1e6) | {"area_unit": "km2"},
        "chips": rows,
    }
    if frac is not None:
        out["fraction_covered"] = M.zone_report(frac_city, classes) | {
            "threshold": config.evaluate.references[ref.name].fraction_threshold}
    if sweep_cls is not None:
        out["sweep"] = _sweep_block(config, adapter, sweep_cls, hist_pos, hist_neg)
    out["probes"] = run_probes(config, adapter, classes, pred.class_map, refc, area, in_chips)
    return out


def _sweep_block(config: PipelineConfig, adapter: str, cls: str, hp: np.ndarray, hn: np.ndarray) -> dict[str, Any]:
    rows = M.sweep(hp, hn, config.evaluate.sweep_thresholds)
    configured = dict(config.infer.adapters[adapter].operating_points)
    at_configured = {n: M.sweep(hp, hn, [t])[0] for n, t in configured.items()}
    best = M.best_threshold(rows)
    return {"class": cls, "rows": rows, "configured_operating_points": configured,
            "at_configured": at_configured,
            "suggested_operating_point": None if best is None else {
                "threshold": best["threshold"], "iou": best["iou"], "criterion": "best IoU of the sweep",
                "applied": False,
                "how_to_apply": f"set infer.adapters.{adapter}.operating_points.<name>: {best['threshold']}"}}


def run_probes(config: PipelineConfig, adapter: str, classes: list[str], class_map: np.ndarray,
               reference: np.ndarray | None, area: AreaGrid, in_chips: np.ndarray) -> list[dict[str, Any]]:
    if not config.evaluate.probes_file:
        return []
    out = []
    for probe in load_probes(config.evaluate.probes_file):
        if not applies(probe, adapter, classes):
            continue
        mask = probe_mask(probe, area, config.grid.crs) & in_chips
        out.append(evaluate_probe(probe, mask, class_map, classes, reference))
    return out
