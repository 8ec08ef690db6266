"""The evaluate stage's contract entry (STAGE): run, status, inputs key, outputs."""

from __future__ import annotations

import json
from typing import Any

import fsspec

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Status, Upstream
from nyceo.evaluate import stage as S
from nyceo.evaluate.reference import check_adapter, load_reference
from nyceo.evaluate.report import output_names, write_all
from nyceo.grid import Lattice
from nyceo.infer.contract import published_pred
from nyceo.io import join, missing_files
from nyceo.keys import digest
from nyceo.provenance import base_provenance



def enabled(config: PipelineConfig) -> str | None:
    if not config.evaluate.references:
        return "no reference configured (evaluate.references is empty)"
    return None


def stored_key(config: PipelineConfig, month: str, adapter: str, reference: str) -> str | None:
    """The key of the pair's outputs; None when metrics.json or any other file of the pair is gone."""
    out_dir = S.eval_dir(config, month, adapter, reference)
    try:
        with fsspec.open(join(out_dir, "metrics.json"), "r") as f:
            doc = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return None if missing_files([join(out_dir, n) for n in output_names(doc)]) else doc.get("key")


def evaluate_pair(config: PipelineConfig, month: str, adapter: str, reference: str,
                  force: bool = False) -> dict[str, Any]:
    """Evaluate one (adapter, reference) pair of ``month``; skip it when its outputs are current."""
    found = published_pred(config, month, adapter)
    if found is None:
        return {"adapter": adapter, "reference": reference, "state": "blocked",
                "reason": f"no published prediction store for {adapter} {month}; run `nyceo infer` first"}
    store, pkey = found
    key = S.pair_key(config, month, adapter, reference, found)
    out_dir = S.eval_dir(config, month, adapter, reference)
    if not force and stored_key(config, month, adapter, reference) == key:
        with fsspec.open(join(out_dir, "metrics.json"), "r") as f:
            doc = json.load(f)
        return _headline(doc, "cached")
    ref_cfg = config.evaluate.references[reference]
    check_adapter(reference, ref_cfg, adapter, list(config.infer.adapters[adapter].classes))
    pred = S.read_pred(store, config, adapter)
    area = S.store_area(store, Lattice.from_config(config.grid))
    chips = S.evaluated_chips(config, area)
    ref = load_reference(reference, config, area)
    res = S.compute(config, adapter, pred, ref, area, chips)
    sha = (pred.provenance.get("model") or {}).get("sha256") or dict(config.infer.adapters[adapter].sha256)
    doc = {
        "month": month, "adapter": adapter, "classes": pred.classes, "key": key, "pred_key": pkey,
        "pred_store": store, "adapter_sha256": sha, "config_hash": config.config_hash(),
        "reference": {"name": reference, "identity": ref.identity, "remap": ref_cfg.remap, "nodata": ref_cfg.nodata,
                      "notes": ref.notes},
        "chips_evaluated": len(chips),
        "provenance": base_provenance(config, "evaluate", month=month, adapter=adapter, adapter_sha256=sha,
                                      pred_key=pkey, key=key, reference=reference),
        **{k: v for k, v in res.items() if k != "chips"},
    }
    write_all(out_dir, doc, res["chips"], chips)
    return _headline(doc, "done")


def _headline(doc: dict[str, Any], state: str) -> dict[str, Any]:
    city = doc["city"]
    out = {"adapter": doc["adapter"], "reference": doc["reference"]["name"], "state": state,
           "miou": city["miou"], "miou_classes": city["miou_classes"], "overall_accuracy": city["overall_accuracy"],
           "evaluated_px": city["evaluated_px"]}
    if doc.get("probes"):
        out["probes_passed"] = f"{sum(p['state'] == 'pass' for p in doc['probes'])}/{len(doc['probes'])}"
    if doc.get("sweep") and doc["sweep"]["suggested_operating_point"]:
        out["suggested_threshold"] = doc["sweep"]["suggested_operating_point"]["threshold"]
    return out


def run_evaluate(config: PipelineConfig, month: str, adapters: list[str] | None = None,
                 references: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Evaluate every configured pair (optionally filtered) whose prediction store is published."""
    paths.check_month(month)
    reason = enabled(config)
    if reason:
        return {"status": "skipped", "reason": reason, "results": []}
    results = [evaluate_pair(config, month, a, r, force) for a, r in S.pairs(config, adapters, references)]
    return {"status": "done", "month": month, "results": results}


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    return run_evaluate(config, month)


def _expected_keys(config: PipelineConfig, month: str) -> dict[tuple[str, str], str | None]:
    """Each pair's key over the CURRENT prediction store (the one the configuration asks for);
    None while infer is not current for that adapter."""
    from nyceo.infer.contract import current_pred

    preds = {a: current_pred(config, month, a) for a, _ in S.pairs(config)}
    return {(a, r): S.pair_key(config, month, a, r, preds[a]) if preds[a] else None for a, r in S.pairs(config)}


def inputs_key(config: PipelineConfig, month: str) -> str | None:
    if enabled(config):
        return None
    keys = _expected_keys(config, month)
    if any(k is None for k in keys.values()):
        return None
    return digest({"stage": "evaluate", "pairs": {f"{a}/{r}": k for (a, r), k in sorted(keys.items())}})


def status(config: PipelineConfig, month: str) -> Status:
    """current: every pair's metrics.json carries the key of the current prediction store; blocked:
    infer is not current for an evaluated adapter (mosaic's rule); else stale / partial / missing."""
    reason = enabled(config)
    if reason:
        return Status("skipped", reason=reason)
    keys = _expected_keys(config, month)
    stored = {p: stored_key(config, month, *p) for p in keys}
    done = sum(k is not None and stored[p] == k for p, k in keys.items())
    total = len(keys)
    key = inputs_key(config, month)
    if done == total:
        return Status("current", done=done, total=total, key=key, published_key=key)
    waiting = sorted({a for (a, _), k in keys.items() if k is None})
    if waiting:
        return Status("blocked", reason=f"infer is not current for {waiting}", done=done, total=total)
    present = sum(v is not None for v in stored.values())
    state = "partial" if done else "stale" if present else "missing"
    return Status(state, done=done, total=total, key=key)


def outputs(config: PipelineConfig, month: str) -> dict[str, str]:
    return {f"{a}/{r}": S.eval_dir(config, month, a, r) for a, r in S.pairs(config)}


STAGE = Stage(
    name="evaluate",
    description="Accuracy of the month's maps against configured references (metrics, area-weighted "
                "estimate with CIs, threshold sweep, probes, per-chip diagnostics).",
    upstreams=(Upstream("infer", 0),),
    outputs=outputs,
    status=status,
    inputs_key=inputs_key,
    run=run,
    key_settings=("evaluate", "infer.adapters.<name>.classes", "acquire.chip_ids", "grid.boroughs"),
    optional=True,
    enabled=enabled,
)
