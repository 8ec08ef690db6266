"""Accuracy figures, every one derived from one confusion matrix per zone.

Convention: ``confusion`` matrices are scikit-learn's, rows = reference (true) class, columns = map
(predicted) class, built with explicit labels so every class has a row and a column even when it is
absent. From it: per-class IoU, precision (= user's accuracy), recall (= producer's accuracy), F1,
overall accuracy and mIoU. A class absent from both sides has no defined figure: it is reported
``null`` with ``absent: "both"`` and left out of the mean, which states how many classes it averages
(torchmetrics' macro mean would count it as IoU 0). Nodata of the map (255) and of the reference are
excluded from the matrix and counted.

:func:`olofsson` is the stratified estimator of Olofsson et al. (2014, Remote Sensing of Environment
148: 42-57, section 4 / eqs. 2-11): error matrix in area proportions with strata = map classes,
user's / producer's / overall accuracy with confidence intervals, error-adjusted area per class.
With a wall-to-wall reference every evaluated pixel is "sampled": the intervals then measure only
how the pixels with reference data represent each map class, not the reference's own errors —
agreement with a reference, not truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm
from sklearn.metrics import confusion_matrix

NODATA = 255


@dataclass
class ZoneCounts:
    """The confusion matrix of one zone plus what was left out of it."""

    matrix: np.ndarray  # int64 (K, K), rows reference, columns map
    map_px: np.ndarray  # int64 (K,): map pixels per class over the zone, whatever the reference says
    map_nodata_px: int = 0  # map nodata (reference valid or not)
    ref_nodata_px: int = 0  # reference nodata where the map is valid

    @classmethod
    def empty(cls, k: int) -> "ZoneCounts":
        return cls(np.zeros((k, k), dtype=np.int64), np.zeros(k, dtype=np.int64))

    def __iadd__(self, other: "ZoneCounts") -> "ZoneCounts":
        self.matrix += other.matrix
        self.map_px += other.map_px
        self.map_nodata_px += other.map_nodata_px
        self.ref_nodata_px += other.ref_nodata_px
        return self


def count(ref: np.ndarray, pred: np.ndarray, n_classes: int) -> ZoneCounts:
    """Confusion matrix (sklearn, explicit labels) of the pixels where both sides have data."""
    ref, pred = ref.ravel(), pred.ravel()
    map_ok = pred != NODATA
    both = map_ok & (ref != NODATA)
    labels = list(range(n_classes))
    if both.any():
        cm = confusion_matrix(ref[both], pred[both], labels=labels).astype(np.int64)
    else:
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    map_px = np.bincount(pred[map_ok], minlength=n_classes)[:n_classes].astype(np.int64)
    return ZoneCounts(cm, map_px, int((~map_ok).sum()), int((map_ok & (ref == NODATA)).sum()))


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def class_metrics(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Per-class IoU / precision / recall / F1, mIoU and overall accuracy from one matrix."""
    tp = np.diag(cm).astype(float)
    ref_tot, map_tot = cm.sum(axis=1).astype(float), cm.sum(axis=0).astype(float)
    per: dict[str, Any] = {}
    for i, name in enumerate(classes):
        union = ref_tot[i] + map_tot[i] - tp[i]
        absent = "both" if union == 0 else "reference" if ref_tot[i] == 0 else "map" if map_tot[i] == 0 else None
        prec, rec = _ratio(tp[i], map_tot[i]), _ratio(tp[i], ref_tot[i])
        per[name] = {
            "iou": _ratio(tp[i], union), "precision": prec, "recall": rec,
            "f1": _ratio(2 * tp[i], ref_tot[i] + map_tot[i]),
            "reference_px": int(ref_tot[i]), "map_px": int(map_tot[i]), "agree_px": int(tp[i]), "absent": absent,
        }
    ious = [v["iou"] for v in per.values() if v["iou"] is not None]
    total = float(cm.sum())
    return {
        "classes": per,
        "miou": float(np.mean(ious)) if ious else None,
        "miou_classes": len(ious),
        "miou_over": [k for k, v in per.items() if v["iou"] is not None],
        "overall_accuracy": _ratio(float(tp.sum()), total),
        "evaluated_px": int(total),
    }


def zone_report(zc: ZoneCounts, classes: list[str]) -> dict[str, Any]:
    out = class_metrics(zc.matrix, classes)
    out.update(map_nodata_px=zc.map_nodata_px, reference_nodata_px=zc.ref_nodata_px,
               confusion=zc.matrix.tolist())
    return out


# ---- Olofsson et al. (2014) -------------------------------------------------------------------------
def _safe(a: np.ndarray) -> list[float | None]:
    return [None if not np.isfinite(v) else float(v) for v in a]


def olofsson(n: np.ndarray, mapped: np.ndarray, classes: list[str], confidence: float = 0.95,
             pixel_area: float = 1.0) -> dict[str, Any]:
    """Stratified (by map class) estimate of accuracy and class areas with confidence intervals.

    ``n``: sample counts with rows = MAP class (stratum) and columns = reference class (Olofsson's
    Table 8 orientation: the transpose of a scikit-learn matrix); ``mapped``: mapped area of each
    stratum in pixels; ``pixel_area``: area of one pixel in the unit areas are reported in.
    Half-widths are ``z * SE`` with ``z`` the two-sided normal quantile of ``confidence``.
    """
    n = np.asarray(n, dtype=float)
    mapped = np.asarray(mapped, dtype=float)
    z = float(norm.ppf(0.5 + confidence / 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        w = mapped / mapped.sum()
        n_i = n.sum(axis=1)
        p = np.where(n_i[:, None] > 0, w[:, None] * n / n_i[:, None], 0.0)  # eq. 4
        users = np.diag(n) / n_i  # eq. 5 via counts
        var_u = users * (1 - users) / (n_i - 1)  # eq. 6
        overall = float(np.trace(p))  # eq. 1 / 8
        var_o = np.nansum(np.where(w > 0, w**2 * users * (1 - users) / (n_i - 1), 0.0))  # eq. 7 (OA)
        p_col = p.sum(axis=0)  # eq. 9
        producers = np.diag(p) / p_col
        n_hat_j = (mapped[:, None] / n_i[:, None] * n).sum(axis=0)  # estimated reference total per class
        ratio = n / n_i[:, None]
        term = np.where(mapped[:, None] > 0, mapped[:, None] ** 2 * ratio * (1 - ratio) / (n_i[:, None] - 1), 0.0)
        off = term.sum(axis=0) - np.diag(term)
        var_p = (mapped**2 * (1 - producers) ** 2 * users * (1 - users) / (n_i - 1) + producers**2 * off) / n_hat_j**2
        se_pcol = np.sqrt(np.where(w[:, None] > 0, (w[:, None] * p - p**2) / (n_i[:, None] - 1), 0.0).sum(axis=0))  # eq. 10
    total_area = mapped.sum() * pixel_area
    return {
        "method": "Olofsson et al. 2014 (RSE 148:42-57), stratified by map class",
        "confidence": confidence, "z": z,
        "classes": list(classes),
        "area_proportions": [[float(v) for v in row] for row in p],  # rows map, columns reference
        "overall_accuracy": overall, "overall_accuracy_ci": float(z * np.sqrt(var_o)),
        "users_accuracy": _safe(users), "users_accuracy_ci": _safe(z * np.sqrt(var_u)),
        "producers_accuracy": _safe(producers), "producers_accuracy_ci": _safe(z * np.sqrt(var_p)),
        "mapped_area": [float(v) for v in mapped * pixel_area],
        "adjusted_area": [float(v) for v in p_col * total_area],
        "adjusted_area_ci": _safe(z * se_pcol * total_area),
        "strata_without_reference": [c for c, m, k in zip(classes, mapped, n_i) if m > 0 and k == 0],
    }


# ---- threshold sweep ---------------------------------------------------------------------------------
def sweep_histograms(prob_u8: np.ndarray, ref_positive: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (255 bins, value = p*254) of the stored probability on reference-positive/negative pixels."""
    p, pos = prob_u8.ravel(), ref_positive.ravel()
    ok = valid.ravel() & (p != NODATA)
    return (np.bincount(p[ok & pos], minlength=255)[:255].astype(np.int64),
            np.bincount(p[ok & ~pos], minlength=255)[:255].astype(np.int64))


def sweep(hist_pos: np.ndarray, hist_neg: np.ndarray, thresholds: list[float]) -> list[dict[str, Any]]:
    """IoU, precision, recall, F1 per threshold (a pixel is positive when p >= threshold).

    The stored probability is ``round(p*254)``, so ``p >= t`` is ``value >= ceil(t*254)``: the counts
    per threshold are exact sums of the histograms (confusion counts per threshold)."""
    tp_at = np.cumsum(hist_pos[::-1])[::-1]  # tp_at[k]: positives with value >= k
    fp_at = np.cumsum(hist_neg[::-1])[::-1]
    positives = int(hist_pos.sum())
    rows = []
    for t in thresholds:
        k = int(np.ceil(t * 254 - 1e-9))
        tp = int(tp_at[k]) if k < 255 else 0
        fp = int(fp_at[k]) if k < 255 else 0
        fn = positives - tp
        rows.append({"threshold": float(t), "tp_px": tp, "fp_px": fp, "fn_px": fn,
                     "iou": _ratio(tp, tp + fp + fn), "precision": _ratio(tp, tp + fp),
                     "recall": _ratio(tp, positives), "f1": _ratio(2 * tp, 2 * tp + fp + fn)})
    return rows


def best_threshold(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the highest IoU (lowest threshold on ties), or None when no IoU is defined."""
    scored = [r for r in rows if r["iou"] is not None]
    return max(scored, key=lambda r: (r["iou"], -r["threshold"])) if scored else None
