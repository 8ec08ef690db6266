"""The noise floor: statistics of |dp| under "no change", thresholds and expected false change.

The null sample is two predictions of the same ground and the same month from disjoint inputs
(``nyceo.change.null_model``): every difference between them is model and scene noise. From it,
per class and per area (each borough and the city):

- ``hist``: counts of |dp_k| in p*254 units (0..254), the whole distribution;
- ``quantiles`` of |dp_k| (probability units) and ``disagreement_rate``: the fraction of pixels
  labelled k in either prediction whose two labels differ (and ``label_disagreement_rate`` over
  all pixels);
- ``threshold_u8``: the smallest t with P(|dp_k| > t) <= false-alarm rate (e.g. the 99th
  percentile at 1 %), from the city-wide distribution (boroughs' own are reported beside it);
- ``false_change_rate``: the fraction of null pixels the full gate (``nyceo.change.gate``, with the
  city thresholds) flags as each transition: multiplied by a real pair's valid pixels it gives the
  expected false-change area reported beside every change figure.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nyceo.change import codes
from nyceo.change.gate import ChangeLayers, MonthLayers, gate

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
N_BINS = 255  # |dp| in p*254 units: 0..254


def abs_dp_hist(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(K, 255) int64 counts of |a_k - b_k| over ``valid`` pixels (probability arrays (K, *S))."""
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))[:, valid]
    return np.stack([np.bincount(row, minlength=N_BINS)[:N_BINS] for row in d]).astype(np.int64)


def threshold_from_hist(hist: np.ndarray, false_alarm_rate: float) -> np.ndarray:
    """(K,) smallest t (p*254 units) with P(|dp| > t) <= rate; 254 for a class without null pixels."""
    out = np.full(hist.shape[0], N_BINS - 1, dtype=np.int64)
    for k, h in enumerate(hist):
        n = h.sum()
        if n == 0:
            continue
        exceed = n - np.cumsum(h)  # exceed[t] = #(|dp| > t)
        out[k] = int(np.argmax(exceed <= false_alarm_rate * n))
    return out


def cdf_table(hist: np.ndarray) -> np.ndarray:
    """(K, 256) P(|dp| <= v) for v = 0..255 (1.0 beyond the last bin; 0 for empty classes)."""
    n = np.maximum(hist.sum(axis=1, keepdims=True), 1)
    cdf = np.cumsum(hist, axis=1) / n
    return np.concatenate([cdf, np.ones((hist.shape[0], 1))], axis=1)


def quantiles_from_hist(h: np.ndarray) -> dict[str, float | None]:
    n = h.sum()
    if n == 0:
        return {f"q{q:g}": None for q in QUANTILES}
    cum = np.cumsum(h) / n
    return {f"q{q:g}": round(float(np.searchsorted(cum, q - 1e-12)) / 254.0, 6) for q in QUANTILES}


def _class_stats(a: MonthLayers, b: MonthLayers, valid: np.ndarray, classes: list[str],
                 far: float) -> dict[str, Any]:
    hist = abs_dp_hist(a.probability, b.probability, valid)
    thr = threshold_from_hist(hist, far)
    ca, cb = a.class_map[valid], b.class_map[valid]
    out: dict[str, Any] = {}
    for k, name in enumerate(classes):
        either = (ca == k) | (cb == k)
        n_either = int(either.sum())
        out[name] = {
            "n_pixels": int(hist[k].sum()), "n_labelled": n_either,
            "disagreement_rate": (round(float((ca[either] != cb[either]).mean()), 6) if n_either else None),
            "quantiles_abs_dp": quantiles_from_hist(hist[k]), "threshold_u8": int(thr[k]),
            "threshold_p": round(int(thr[k]) / 254.0, 6), "hist_abs_dp_u8": hist[k].tolist(),
        }
    return out


def null_summary(a: MonthLayers, b: MonthLayers, area_index: np.ndarray, area_slugs: list[str], city: str,
                 classes: list[str], false_alarm_rate: float, min_confidence: float,
                 building_index: int | None = None) -> dict[str, Any]:
    """Null statistics per area; ``area_index`` (S) int: index into ``area_slugs`` (-1 outside all).

    ``city`` names the union of the areas (its statistics and thresholds are the defaults)."""
    valid = (a.class_map != codes.NODATA) & (b.class_map != codes.NODATA) & (area_index >= 0)
    if not valid.any():
        raise ValueError("the null sample has no pixel predicted in both halves inside the areas; "
                         "raise change.noise.sample_fraction or check the month's stack")
    city_stats = _class_stats(a, b, valid, classes, false_alarm_rate)
    thresholds = np.array([city_stats[c]["threshold_u8"] for c in classes])
    cdf = cdf_table(np.array([city_stats[c]["hist_abs_dp_u8"] for c in classes]))
    gated = gate(a, b, thresholds, min_confidence, cdf, building_index)
    areas = {city: _area_entry(a, b, valid, gated, classes, false_alarm_rate, city_stats)}
    for i, slug in enumerate(area_slugs):
        sel = valid & (area_index == i)
        if sel.any():
            areas[slug] = _area_entry(a, b, sel, gated, classes, false_alarm_rate)
        else:
            areas[slug] = {"n_pixels": 0, "note": "no null-sample pixel in this area"}
    return {"classes": list(classes), "false_alarm_rate": false_alarm_rate, "min_confidence": min_confidence,
            "thresholds_u8": thresholds.tolist(), "thresholds_p": [round(int(t) / 254.0, 6) for t in thresholds],
            "areas": areas}


def _area_entry(a: MonthLayers, b: MonthLayers, sel: np.ndarray, gated: ChangeLayers, classes: list[str],
                far: float, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    n = int(sel.sum())
    counts = np.bincount(gated.transition[sel], minlength=256)
    rates = {str(c): round(float(counts[c]) / n, 8) for c in range(len(classes) ** 2) if counts[c]}
    return {
        "n_pixels": n,
        "label_disagreement_rate": round(float((a.class_map[sel] != b.class_map[sel]).mean()), 6),
        "false_change_rate": round(float(counts[: len(classes) ** 2].sum()) / n, 8),
        "false_change_rate_by_transition": rates,
        "classes": stats if stats is not None else _class_stats(a, b, sel, classes, far),
    }


def thresholds_and_cdf(summary: dict[str, Any], city: str) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds_u8 (K,), cdf (K, 256)) of a stored summary (the city-wide null)."""
    classes = summary["classes"]
    hist = np.array([summary["areas"][city]["classes"][c]["hist_abs_dp_u8"] for c in classes], dtype=np.int64)
    return np.asarray(summary["thresholds_u8"], dtype=np.int64), cdf_table(hist)


def false_rate(summary: dict[str, Any], area: str, city: str, code: int) -> float:
    """Null false-change rate of a transition code in ``area`` (the city's when the area had no sample)."""
    entry = summary["areas"].get(area) or {}
    if not entry.get("n_pixels"):
        entry = summary["areas"][city]
    return float(entry["false_change_rate_by_transition"].get(str(code), 0.0))
