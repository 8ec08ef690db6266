"""Change gating, transition codes, noise-floor statistics and change areas (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from nyceo.change import codes
from nyceo.change.areas import area_rows
from nyceo.change.gate import MonthLayers, gate
from nyceo.change.noise import abs_dp_hist, cdf_table, null_summary, threshold_from_hist
from tests.change_fixtures import base_logits, plant, realize

K = 5
CLASSES = ["water", "developed", "forest", "herbaceous", "other"]
FAR = 0.01
N = 120_000


def test_transition_codes_round_trip_and_special_codes_are_distinct():
    assert codes.transition_code(2, 4, K) == 14 and codes.decode(14, K) == (2, 4)
    arr = codes.transition_code(np.array([0, 4, 1], np.uint8), np.array([1, 3, 1], np.uint8), K)
    assert arr.dtype == np.uint8 and arr.tolist() == [1, 23, 6]
    all_codes = {codes.transition_code(a, b, K) for a in range(K) for b in range(K)}
    assert len(all_codes) == K * K and max(all_codes) < codes.NO_CHANGE
    assert len({codes.NO_CHANGE, codes.UNCERTAIN, codes.NODATA}) == 3
    assert codes.transition_name(codes.transition_code(1, 2, K), CLASSES) == "developed -> forest"
    with pytest.raises(ValueError, match="classes"):
        codes.check_classes([f"c{i}" for i in range(16)])
    cmap = codes.transition_colormap(["#000000", "#ff0000"])
    assert cmap[codes.transition_code(0, 1, 2)] == (255, 0, 0, 255) and cmap[codes.NODATA][3] == 0


def _null(logits, seed=100):
    a, b = realize(logits, seed), realize(logits, seed + 1)
    summary = null_summary(a, b, np.zeros(a.class_map.shape, np.int16), ["manhattan"], "nyc", CLASSES, FAR, 0.5)
    return summary, np.array(summary["thresholds_u8"]), cdf_table(
        np.array([summary["areas"]["nyc"]["classes"][c]["hist_abs_dp_u8"] for c in CLASSES]))


def test_pure_noise_false_change_rate_is_within_the_configured_rate():
    logits = base_logits(K, (N,), seed=1)
    _, thr, cdf = _null(logits)
    a, b = realize(logits, 7), realize(logits, 8)  # same ground, other inputs
    raw_flips = float((a.class_map != b.class_map).mean())
    res = gate(a, b, thr, 0.5, cdf)
    rate = float(res.changed.mean())
    assert raw_flips > 5 * FAR, "the noise must flip labels, or the test shows nothing"
    assert rate <= FAR
    assert (res.transition[a.class_map != b.class_map] != codes.NO_CHANGE).all()


def test_planted_change_is_found_with_its_transition_code():
    logits = base_logits(K, (N,), seed=2)
    _, thr, cdf = _null(logits)
    where = np.zeros(N, bool)
    where[:5000] = True
    src = logits[:, where].argmax(axis=0)
    target = np.where(src == 1, 2, 1)  # developed -> forest, anything else -> developed
    after = logits.copy()
    for to in (1, 2):
        after = plant(after, where & np.isin(np.arange(N), np.nonzero(where)[0][target == to]), to, strength=6.0)
    a, b = realize(logits, 11), realize(after, 12)
    res = gate(a, b, thr, 0.5, cdf)
    found = res.changed[where].mean()
    assert found > 0.75  # misses: pixels whose month-A label was already off (noise), see the test above
    want = codes.transition_code(a.class_map[where], b.class_map[where], K)
    hit = res.changed[where]
    assert (res.transition[where][hit] == want[hit]).all()
    assert (res.gain[where][hit] == b.class_map[where][hit]).all()
    assert (res.loss[where][hit] == a.class_map[where][hit]).all()
    assert res.changed[~where].mean() <= FAR  # the floor holds elsewhere
    assert np.median(res.confidence[where][hit]) > 250  # far beyond the null: confidence near 1


def test_unconfident_months_make_label_changes_uncertain_not_changed():
    logits = base_logits(K, (20_000,), seed=3)
    _, thr, cdf = _null(logits)
    after = plant(logits, np.ones(20_000, bool), 0)
    a, b = realize(logits, 1), realize(after, 2)
    res = gate(a, b, thr, 0.999, cdf)
    differ = a.class_map != b.class_map
    assert differ.mean() > 0.5 and not res.changed.any()
    assert (res.transition[differ] == codes.UNCERTAIN).all()


def test_nodata_in_either_month_is_nodata():
    logits = base_logits(K, (1000,), seed=4)
    hole = np.zeros(1000, bool)
    hole[:100] = True
    a, b = realize(logits, 1, nodata=hole), realize(logits, 2)
    res = gate(a, b, np.zeros(K, int), 0.0, np.ones((K, 256)), building_index=1)
    for layer in (res.transition, res.gain, res.loss, res.confidence, res.building, res.building_dp):
        assert (layer[hole] == codes.NODATA).all() and (layer[~hole] != codes.NODATA).all()


def test_building_layers_new_vanished_and_delta_probability_encoding():
    probs = np.array([[254, 0, 127, 200], [0, 254, 127, 54]], np.uint8)  # p(background), p(building)
    after = np.array([[0, 254, 127, 200], [254, 0, 127, 54]], np.uint8)
    mk = lambda p: MonthLayers(p.argmax(axis=0).astype(np.uint8), p, p.max(axis=0))  # noqa: E731
    res = gate(mk(probs), mk(after), np.array([10, 10]), 0.5, cdf_table(np.ones((2, 255), np.int64)), 1)
    assert res.building.tolist() == [codes.BUILDING_NEW, codes.BUILDING_VANISHED, codes.BUILDING_NONE,
                                     codes.BUILDING_NONE]
    dp = (res.building_dp.astype(float) - codes.DP_OFFSET) * codes.DP_SCALE
    np.testing.assert_allclose(dp, [1.0, -1.0, 0.0, 0.0], atol=1 / 254)


def test_noise_floor_statistics_on_a_known_distribution():
    # |dp| of class k takes each value 0..99 exactly 100 times: P(|dp| > 98) = 1 % -> threshold 98
    n = 10_000
    d = np.tile(np.arange(100), 100)
    a = np.full((2, n), 100, np.uint8)
    b = a.copy()
    b[0] = 100 + d
    b[1] = 100 - d
    h = abs_dp_hist(a, b, np.ones(n, bool))
    assert h[0, :100].tolist() == [100] * 100 and h[0, 100:].sum() == 0
    assert threshold_from_hist(h, 0.01).tolist() == [98, 98]
    assert threshold_from_hist(h, 0.10).tolist() == [89, 89]
    cmap_a = np.zeros(n, np.uint8)
    cmap_b = (np.arange(n) % 4 == 0).astype(np.uint8)  # labels differ on 25 % of pixels
    s = null_summary(MonthLayers(cmap_a, a, np.full(n, 200, np.uint8)), MonthLayers(cmap_b, b, np.full(n, 200, np.uint8)),
                     np.where(np.arange(n) < n // 2, 0, 1).astype(np.int16), ["bronx", "queens"], "nyc",
                     ["background", "building"], 0.01, 0.5)
    city = s["areas"]["nyc"]
    assert s["thresholds_u8"] == [98, 98] and city["n_pixels"] == n
    assert city["label_disagreement_rate"] == pytest.approx(0.25)
    assert city["classes"]["background"]["disagreement_rate"] == pytest.approx(0.25)
    assert city["classes"]["background"]["quantiles_abs_dp"]["q0.5"] == pytest.approx(49 / 254, abs=1e-6)
    assert s["areas"]["bronx"]["n_pixels"] == n // 2 and s["areas"]["queens"]["n_pixels"] == n // 2


def test_change_areas_add_up_to_the_transition_pixel_counts():
    rng = np.random.default_rng(5)
    t = rng.choice([1, 5, 7, 23, codes.NO_CHANGE, codes.UNCERTAIN, codes.NODATA], size=(300, 200)).astype(np.uint8)
    summary = {"areas": {"nyc": {"n_pixels": 10, "false_change_rate_by_transition": {"1": 0.001, "23": 0.002}}}}
    rows = area_rows("nyc", t, CLASSES, summary, "nyc", 1e-4, building_index=1)
    px = {(r["kind"], r["code"]): r["pixels"] for r in rows}
    n_valid = int((t != codes.NODATA).sum())
    trans = sum(r["pixels"] for r in rows if r["kind"] == "transition")
    assert trans + px[("no_change", codes.NO_CHANGE)] + px[("uncertain", codes.UNCERTAIN)] == n_valid
    assert px[("valid", None)] == n_valid
    for code in (1, 5, 7, 23):
        assert px[("transition", code)] == int((t == code).sum())
    gains = sum(r["pixels"] for r in rows if r["kind"] == "gain")
    assert gains == trans == sum(r["pixels"] for r in rows if r["kind"] == "loss")
    row23 = next(r for r in rows if r["code"] == 23)
    assert row23["area_km2"] == pytest.approx((t == 23).sum() * 1e-4)
    assert row23["expected_false_km2"] == pytest.approx(0.002 * n_valid * 1e-4, abs=1e-6)
    new = next(r for r in rows if r["kind"] == "building_new")  # gains of class 1 (codes 1, 6, 11, 16, 21)
    assert new["pixels"] == int((t == 1).sum())
