"""Compare two trained adapters on the same test split: per-class IoU, ΔmIoU (B − A), seed spread.

``compare_adapters(config, a, b)`` reads each adapter's exported ``eval/metrics.json`` and
``splits/test.txt`` (its folder: ``infer.adapters.<name>.source``) and refuses, naming the
difference and the fix, unless both were computed on the **same test chips** (the two
``splits/test.txt`` hold the same chip ids), the **same labels** (``metrics.json`` ``labels``: the
label source's identity), the same classes and the same number of test pixels (same months and
stacks). Nothing is recomputed: equal splits are what two recipes with the same chips, months and
``split`` settings give (the split is a pure function of the chip ids), and it keeps the
comparison to the figures the adapters were published with.

Spread: the standard deviation of test mIoU over each adapter's seeds (``metrics.json`` ``seeds``,
from ``--seeds N``); the combined spread is sqrt(std_A² + std_B²), and the difference of the seed
means counts as beyond the noise when it exceeds it. With one seed on either side the spread is
unknown and so is the verdict (``exceeds_spread: null``). Written to
``{train.root}/compare/<A>_vs_<B>/comparison.{json,md}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nyceo.config import PipelineConfig
from nyceo.io import atomic_local_path, write_json_atomic
from nyceo.train.errors import TrainError


def _read(config: PipelineConfig, adapter: str) -> tuple[dict[str, Any], list[str]]:
    from nyceo.model.weights import parse_source

    if adapter not in config.infer.adapters:
        raise TrainError(f"adapter '{adapter}' is not in infer.adapters (known: {sorted(config.infer.adapters)})")
    src = parse_source(config.infer.adapters[adapter].source, config.run.output_root)
    folder = Path(src.location)
    metrics_path, test_path = folder / "eval" / "metrics.json", folder / "splits" / "test.txt"
    if src.kind != "local" or not metrics_path.is_file() or not test_path.is_file():
        raise TrainError(f"adapter '{adapter}' has no exported eval/metrics.json and splits/test.txt in "
                         f"{src.describe()}; train it first (`nyceo adapters train -c FILE --adapter {adapter}`)")
    metrics = json.loads(metrics_path.read_text())
    return metrics, sorted(line.strip() for line in test_path.read_text().splitlines() if line.strip())


def check_comparable(a: str, b: str, ma: dict[str, Any], mb: dict[str, Any], ta: list[str], tb: list[str]) -> None:
    """Same test chips, labels, classes and test pixels; else an error naming the difference and the fix."""
    if ta != tb:
        only_a, only_b = sorted(set(ta) - set(tb)), sorted(set(tb) - set(ta))
        raise TrainError(
            f"'{a}' and '{b}' were tested on different chips ({len(ta)} vs {len(tb)}; only in {a}: {only_a[:10]}, "
            f"only in {b}: {only_b[:10]}); train both with the same months, chip_ids/max_chips and split settings "
            "so their splits/test.txt agree")
    if ma.get("labels") != mb.get("labels"):
        raise TrainError(f"'{a}' and '{b}' were trained and tested on different labels ({ma.get('labels')} vs "
                         f"{mb.get('labels')}); give both recipes the same labels.source")
    ca, cb = list(ma["test"]["IoU"]), list(mb["test"]["IoU"])
    if ca != cb:
        raise TrainError(f"'{a}' has classes {ca} and '{b}' {cb}: per-class IoU and mIoU compare only adapters "
                         "with the same classes in the same order")
    if ma["test"]["pixels"] != mb["test"]["pixels"]:
        raise TrainError(f"'{a}' and '{b}' counted {ma['test']['pixels']} vs {mb['test']['pixels']} test pixels on "
                         "the same chips: their training months (stacks) differ; train both on the same months")


def _spread(metrics: dict[str, Any]) -> tuple[int, float | None, float | None]:
    seeds = metrics.get("seeds") or {}
    values = seeds.get("values") or []
    std = seeds.get("std") if len(values) > 1 else None
    return len(values), seeds.get("mean"), std


def _delta(x: float | None, y: float | None) -> float | None:
    return None if x is None or y is None else y - x


def comparison(a: str, b: str, ma: dict[str, Any], mb: dict[str, Any], test_chips: list[str]) -> dict[str, Any]:
    """The comparison record (see the module docstring)."""
    (na, mean_a, sa), (nb, mean_b, sb) = _spread(ma), _spread(mb)
    combined = math.sqrt(sa**2 + sb**2) if sa is not None and sb is not None else None
    delta_mean = _delta(mean_a, mean_b)
    exceeds = None if combined is None or delta_mean is None else abs(delta_mean) > combined
    iou_a, iou_b = ma["test"]["IoU"], mb["test"]["IoU"]
    return {
        "a": a, "b": b, "test_chips": len(test_chips), "test_pixels": ma["test"]["pixels"], "labels": ma.get("labels"),
        "classes": {c: {"a": iou_a[c], "b": iou_b[c], "delta": _delta(iou_a[c], iou_b[c])} for c in iou_a},
        "mIoU": {"a": ma["test"]["mIoU"], "b": mb["test"]["mIoU"], "delta": _delta(ma["test"]["mIoU"], mb["test"]["mIoU"])},
        "seeds": {"a": {"n": na, "mean": mean_a, "std": sa}, "b": {"n": nb, "mean": mean_b, "std": sb},
                  "delta_mean": delta_mean, "combined_std": combined, "exceeds_spread": exceeds},
        "verdict": _verdict(a, b, delta_mean, combined, exceeds),
        "method": "exported eval/metrics.json of each adapter on identical splits/test.txt (nothing recomputed); "
                  "combined_std = sqrt(std_a^2 + std_b^2) of test mIoU over seeds",
    }


def _verdict(a: str, b: str, delta: float | None, combined: float | None, exceeds: bool | None) -> str:
    if exceeds is None:
        return (f"ΔmIoU ({b} − {a}) of the seed means is {_fmt(delta)}; the seed spread is unknown (train each with "
                "--seeds 2 or more), so whether it exceeds the noise is not known")
    word = "exceeds" if exceeds else "does not exceed"
    return f"|ΔmIoU| ({b} − {a}) of the seed means, {abs(delta):.3f}, {word} the combined seed spread {combined:.3f}"


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:+.3f}"


def markdown(rec: dict[str, Any]) -> str:
    a, b = rec["a"], rec["b"]
    rows = "\n".join(f"| {c} | {_fmt(v['a']).lstrip('+')} | {_fmt(v['b']).lstrip('+')} | {_fmt(v['delta'])} |"
                     for c, v in rec["classes"].items())
    s = rec["seeds"]
    m = rec["mIoU"]
    return f"""# {a} vs {b}

Same test split: {rec['test_chips']} chips, {rec['test_pixels']} labelled pixels; labels `{json.dumps(rec['labels'])}`.

| class | IoU {a} | IoU {b} | Δ ({b} − {a}) |
|---|---|---|---|
{rows}
| **mIoU** | {_fmt(m['a']).lstrip('+')} | {_fmt(m['b']).lstrip('+')} | {_fmt(m['delta'])} |

Seeds: {a} n={s['a']['n']} mean {_fmt(s['a']['mean']).lstrip('+')} std {_fmt(s['a']['std']).lstrip('+')}; \
{b} n={s['b']['n']} mean {_fmt(s['b']['mean']).lstrip('+')} std {_fmt(s['b']['std']).lstrip('+')}.

{rec['verdict']}.
"""


def compare_root(config: PipelineConfig, a: str, b: str) -> Path:
    return Path(config.train.root.replace("{output_root}", config.run.output_root)) / "compare" / f"{a}_vs_{b}"


def compare_adapters(config: PipelineConfig, a: str, b: str) -> dict[str, Any]:
    """Compare exported adapters ``a`` and ``b``; write comparison.json + comparison.md; return the record
    (with ``folder``)."""
    if a == b:
        raise TrainError(f"compare: give two different adapters (got '{a}' twice)")
    (ma, ta), (mb, tb) = _read(config, a), _read(config, b)
    check_comparable(a, b, ma, mb, ta, tb)
    rec = comparison(a, b, ma, mb, ta)
    from nyceo.train.manifest import software_versions

    rec["provenance"] = {"training_keys": {a: ma.get("training_key"), b: mb.get("training_key")},
                         "config_hash": config.config_hash(), "software": software_versions()}
    folder = compare_root(config, a, b)
    write_json_atomic(str(folder / "comparison.json"), rec)
    with atomic_local_path(folder / "comparison.md") as tmp:
        tmp.write_text(markdown(rec))
    return {**rec, "folder": str(folder)}
