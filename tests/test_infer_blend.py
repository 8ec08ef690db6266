"""Window lattice and blending invariants of the tiled engine (pure numpy, property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nyceo.config import GridConfig
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.blend import BlendAccumulator, quantize, taper_1d, taper_2d
from nyceo.infer.windows import WindowPlan, axis_starts, stride_px

LAT = Lattice.from_config(GridConfig())
W = 224


@settings(max_examples=60, deadline=None)
@given(chip0=st.integers(0, 400), n_chips=st.integers(1, 9), overlap=st.sampled_from([0.0, 0.25, 0.5, 0.6, 0.75]))
def test_windows_cover_every_pixel_to_the_edges(chip0: int, n_chips: int, overlap: float) -> None:
    start, length = chip0 * W, n_chips * W
    step = stride_px(W, overlap)
    starts = axis_starts(start, length, W, step)
    cover = np.zeros(length, dtype=int)
    for s in starts:
        assert start <= s and s + W <= start + length  # windows stay inside the area
        cover[s - start : s - start + W] += 1
    assert cover.min() >= 1  # every pixel, edges included
    assert np.all(np.diff(starts) <= step)  # never a gap wider than the stride
    inner = starts[(starts != start) & (starts != start + length - W)]
    assert np.all(inner % step == 0)  # non-edge windows sit on the global lattice


@settings(max_examples=30, deadline=None)
@given(chip0=st.integers(0, 50), n=st.integers(1, 6), sub0=st.integers(0, 5), m=st.integers(1, 6))
def test_window_positions_are_stable_across_areas(chip0: int, n: int, sub0: int, m: int) -> None:
    """Like chip IDs: a sub-area's windows are the big area's windows (stride dividing the chip)."""
    big = WindowPlan.for_area(AreaGrid(chip0, chip0, sub0 + m + n, sub0 + m + n, LAT), 0.5)
    small = WindowPlan.for_area(AreaGrid(chip0 + sub0, chip0 + sub0, m, m, LAT), 0.5)
    assert set(small.y_starts.tolist()) <= set(big.y_starts.tolist())
    assert set(small.x_starts.tolist()) <= set(big.x_starts.tolist())


def test_production_stride_and_window_count() -> None:
    assert stride_px(W, 0.5) == 112 and stride_px(W, 0.25) == 168 and stride_px(W, 0.0) == 224
    plan = WindowPlan.for_area(AreaGrid(217, 251, 3, 2, LAT), 0.5)
    assert len(plan.all_windows()) == 5 * 3
    with pytest.raises(ValueError, match="overlap_fraction"):
        stride_px(W, 1.0)


@pytest.mark.parametrize("kind", ["hann", "triangular", "box"])
def test_taper_is_positive_symmetric_and_bounded(kind: str) -> None:
    w = taper_1d(W, kind, 1e-3)
    assert w.min() >= 1e-3 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1])


def test_hann_at_half_overlap_is_already_a_partition_of_unity() -> None:
    w = taper_1d(W, "hann", 1e-9)
    np.testing.assert_allclose(w[112:] + w[:112], 1.0, atol=1e-6)


def _random_windows(rng: np.random.Generator, shape: tuple[int, int], size: int, n: int) -> list[tuple[int, int]]:
    return sorted((int(rng.integers(0, shape[0] - size + 1)), int(rng.integers(0, shape[1] - size + 1))) for _ in range(n))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["hann", "triangular"]), floor=st.floats(1e-6, 0.5))
def test_blend_invariants(seed: int, kind: str, floor: float) -> None:
    """Normalized weights partition unity, constants stay constant, probabilities stay normalized."""
    rng = np.random.default_rng(seed)
    size, shape, k = 32, (80, 96), 3
    origins = _random_windows(rng, shape, size, 6)
    weights = taper_2d(size, kind, floor)
    const = BlendAccumulator(1, (0, shape[0], 0, shape[1]), weights)
    probs = BlendAccumulator(k, (0, shape[0], 0, shape[1]), weights)
    for oy, ox in origins:
        const.add(np.full((1, size, size), 0.3, np.float32), oy, ox)
        p = rng.random((k, size, size)).astype(np.float32)
        probs.add(p / p.sum(axis=0), oy, ox)
    c, covered = const.result()
    p, covered_p = probs.result()
    np.testing.assert_allclose(c[0][covered], 0.3, rtol=1e-5)  # constant field stays constant
    np.testing.assert_allclose(p.sum(axis=0)[covered], 1.0, rtol=1e-5)  # partition of unity
    assert np.array_equal(covered, covered_p) and not c[0][~covered].any()
    expected_cover = np.zeros(shape, bool)
    for oy, ox in origins:
        expected_cover[oy : oy + size, ox : ox + size] = True
    assert np.array_equal(covered, expected_cover)


def test_single_window_pixels_get_that_window_exactly() -> None:
    rng = np.random.default_rng(3)
    acc = BlendAccumulator(2, (0, 64, 0, 64), taper_2d(32, "hann", 1e-3))
    p = rng.random((2, 32, 32)).astype(np.float32)
    acc.add(p, 0, 0)  # alone: weights near its border are tiny but must not change the value
    out, covered = acc.result()
    np.testing.assert_allclose(out[:, :32, :32], p, rtol=1e-6)
    assert covered[:32, :32].all() and not covered[32:, :].any()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut_y=st.integers(1, 95), cut_x=st.integers(1, 95))
def test_blocks_blend_bitwise_like_the_whole(seed: int, cut_y: int, cut_x: int) -> None:
    """Accumulating only a box (windows in the same global order) equals the whole, bit for bit."""
    rng = np.random.default_rng(seed)
    size, shape = 32, (96, 96)
    origins = _random_windows(rng, shape, size, 10)
    preds = [rng.random((2, size, size)).astype(np.float32) for _ in origins]
    weights = taper_2d(size)
    whole = BlendAccumulator(2, (0, 96, 0, 96), weights)
    parts = [BlendAccumulator(2, box, weights) for box in
             [(0, cut_y, 0, cut_x), (0, cut_y, cut_x, 96), (cut_y, 96, 0, cut_x), (cut_y, 96, cut_x, 96)]]
    for p, (oy, ox) in zip(preds, origins):
        for acc in (whole, *parts):
            acc.add(p, oy, ox)
    w, _ = whole.result()
    got = np.zeros_like(w)
    for acc in parts:
        got[:, acc.y0 : acc.y1, acc.x0 : acc.x1] = acc.result()[0]
    assert np.array_equal(got, w)


def test_quantize_layers_and_nodata() -> None:
    prob = np.array([[[0.2, 1.0]], [[0.8, 0.0]]], dtype=np.float32)  # [K=2, 1, 2]
    valid = np.array([[True, False]])
    q = quantize(prob, valid)
    assert q["probability"][:, 0, 0].tolist() == [51, 203]  # round(0.2*254)=51, round(0.8*254)=203
    assert q["class_map"].tolist() == [[1, 255]] and q["confidence"].tolist() == [[203, 255]]
    assert q["probability"][:, 0, 1].tolist() == [255, 255]
