"""Metrics from one confusion matrix, the Olofsson et al. (2014) estimator, the threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest

from nyceo.evaluate import metrics as M

N = M.NODATA


def test_metrics_against_a_hand_computed_matrix():
    # classes a, b, c, d: c is absent from both sides, d only in the reference
    ref = np.array([0, 0, 0, 1, 1, 3, N, 0], dtype=np.uint8)
    pred = np.array([0, 0, 1, 1, 0, 0, 0, N], dtype=np.uint8)
    zc = M.count(ref, pred, 4)
    # pairs with both sides valid: (a,a) (a,a) (a,b) (b,b) (b,a) (d,a); rows reference, columns map
    assert zc.matrix.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]]
    assert zc.map_nodata_px == 1 and zc.ref_nodata_px == 1  # excluded, and counted
    assert zc.map_px.tolist() == [5, 2, 0, 0]  # map pixels whatever the reference says
    rep = M.class_metrics(zc.matrix, ["a", "b", "c", "d"])
    a, b, c, d = (rep["classes"][k] for k in "abcd")
    # a: TP 2, reference 3, map 4 -> IoU 2/5, precision 2/4, recall 2/3, F1 4/7
    assert (a["iou"], a["precision"], a["recall"], a["f1"]) == pytest.approx((0.4, 0.5, 2 / 3, 4 / 7))
    assert (b["iou"], b["precision"], b["recall"], b["f1"]) == pytest.approx((1 / 3, 0.5, 0.5, 0.5))
    assert c == {"iou": None, "precision": None, "recall": None, "f1": None, "reference_px": 0, "map_px": 0,
                 "agree_px": 0, "absent": "both"}
    # d: in the reference only -> IoU 0, recall 0, precision undefined (never mapped)
    assert d["iou"] == 0 and d["recall"] == 0 and d["precision"] is None and d["absent"] == "map"
    assert rep["miou"] == pytest.approx((0.4 + 1 / 3 + 0) / 3)  # c left out, and the mean says so
    assert rep["miou_classes"] == 3 and rep["miou_over"] == ["a", "b", "d"]
    assert rep["overall_accuracy"] == pytest.approx(3 / 6) and rep["evaluated_px"] == 6


def test_zone_counts_add_up():
    rng = np.random.default_rng(3)
    ref = rng.integers(0, 3, 500).astype(np.uint8)
    pred = rng.integers(0, 3, 500).astype(np.uint8)
    pred[:7] = N
    whole = M.count(ref, pred, 3)
    parts = M.ZoneCounts.empty(3)
    parts += M.count(ref[:200], pred[:200], 3)
    parts += M.count(ref[200:], pred[200:], 3)
    assert (parts.matrix == whole.matrix).all() and parts.map_nodata_px == whole.map_nodata_px == 7


def test_olofsson_2014_worked_example():
    """Olofsson et al. (2014), Remote Sensing of Environment 148: 42-57, section 5 (Tables 8-9).

    Strata = map classes deforestation, forest gain, stable forest, stable non-forest; mapped area
    200 000 / 150 000 / 3 200 000 / 6 450 000 pixels of 30 m (0.09 ha). Table 8's sample counts have
    rows = MAP class and columns = reference class: [[66,0,5,4],[0,55,8,12],[1,0,153,11],[2,1,9,313]]
    (its transpose, as sometimes quoted, has columns = map). Published (section 5.2): user's accuracy
    0.88 ± 0.07, 0.73 ± 0.10, 0.93 ± 0.04, 0.96 ± 0.02; producer's 0.75 ± 0.21, 0.85 ± 0.23,
    0.93 ± 0.03, 0.96 ± 0.01; overall 0.95 ± 0.02; error-adjusted area 21 158 ± 6 158 ha,
    11 686 ± 3 756 ha, 285 770 ± 15 510 ha, 581 386 ± 16 282 ha. Two printed producer's half-widths
    disagree with the paper's own eq. 7 (forest gain 0.254, stable non-forest 0.018, as recomputed by
    the R packages mapaccuracy/mapac); those are asserted at the equation value.
    By hand: W = (0.02, 0.015, 0.32, 0.645); user's accuracy of deforestation = 66/75 = 0.88,
    half-width 1.96*sqrt(0.88*0.12/74) = 0.074; p_11 = 0.02*66/75 = 0.0176.
    """
    n = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])
    mapped = [200_000, 150_000, 3_200_000, 6_450_000]
    r = M.olofsson(n, mapped, ["deforestation", "gain", "stable_forest", "stable_nonforest"], 0.95, pixel_area=0.09)
    table9 = [[0.0176, 0, 0.0013, 0.0011], [0, 0.0110, 0.0016, 0.0024],
              [0.0019, 0, 0.2967, 0.0213], [0.0040, 0.0020, 0.0179, 0.6212]]
    assert np.round(r["area_proportions"], 4).tolist() == table9
    assert np.round(r["users_accuracy"], 2).tolist() == [0.88, 0.73, 0.93, 0.96]
    assert np.round(r["users_accuracy_ci"], 2).tolist() == [0.07, 0.10, 0.04, 0.02]
    assert np.round(r["producers_accuracy"], 2).tolist() == [0.75, 0.85, 0.93, 0.96]
    assert np.round(r["producers_accuracy_ci"], 3).tolist() == [0.213, 0.254, 0.034, 0.018]
    assert round(r["overall_accuracy"], 3) == 0.947 and round(r["overall_accuracy_ci"], 2) == 0.02
    assert np.round(r["adjusted_area"]).tolist() == [21158, 11686, 285770, 581386]
    assert np.round(r["adjusted_area_ci"]).tolist() == [6158, 3756, 15510, 16281]  # 16 282 printed (rounding)
    assert r["mapped_area"] == pytest.approx([18_000, 13_500, 288_000, 580_500])


def test_olofsson_with_a_stratum_without_reference():
    n = np.array([[10, 2, 0], [1, 20, 0], [0, 0, 0]])
    r = M.olofsson(n, [100, 200, 50], ["a", "b", "c"])
    assert r["strata_without_reference"] == ["c"]
    assert r["users_accuracy"][2] is None and r["users_accuracy"][0] == pytest.approx(10 / 12)


def test_sweep_counts_per_threshold():
    # stored probabilities (p*254): positives 254 (1.0), 152 (0.598), 127 (0.5), 25 (0.098);
    # negatives 200 (0.787), 127 (0.5), 0, 13 (0.051); one pixel nodata and one without reference
    prob = np.array([254, 152, 127, 25, 200, 127, 0, 13, N, 254], dtype=np.uint8)
    pos = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 1], dtype=bool)
    valid = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)
    hp, hn = M.sweep_histograms(prob, pos, valid)
    assert hp.sum() == 4 and hn.sum() == 4
    rows = {r["threshold"]: r for r in M.sweep(hp, hn, [0.05, 0.5, 0.6, 0.95])}
    # t=0.5 -> value >= 127: TP 3 (254,152,127), FP 2 (200,127), FN 1
    assert (rows[0.5]["tp_px"], rows[0.5]["fp_px"], rows[0.5]["fn_px"]) == (3, 2, 1)
    assert (rows[0.5]["iou"], rows[0.5]["precision"], rows[0.5]["recall"]) == pytest.approx((0.5, 0.6, 0.75))
    # t=0.6 -> value >= 153 (0.6*254 = 152.4): 152 is now negative
    assert (rows[0.6]["tp_px"], rows[0.6]["fp_px"]) == (1, 1) and rows[0.6]["iou"] == pytest.approx(0.2)
    # t=0.05 -> value >= 13: TP 4, FP 3 (200, 127, 13)
    assert rows[0.05]["iou"] == pytest.approx(4 / 7) and rows[0.05]["recall"] == 1.0
    assert rows[0.95]["tp_px"] == 1 and rows[0.95]["precision"] == 1.0
    assert M.best_threshold(list(rows.values()))["threshold"] == 0.05
    # the same counts as scikit-learn's precision_recall_curve at its thresholds
    from sklearn.metrics import precision_recall_curve

    ok = valid & (prob != N)
    prec, rec, thr = precision_recall_curve(pos[ok], prob[ok] / 254)
    i = int(np.argmin(np.abs(thr - 127 / 254)))
    assert (prec[i], rec[i]) == pytest.approx((rows[0.5]["precision"], rows[0.5]["recall"]))
