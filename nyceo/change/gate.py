"""Per-pixel change between two months' quantized predictions, gated by the noise floor.

Inputs are the prediction stores' uint8 layers (``probability`` = p * 254, 255 nodata) of the same
ground. A pixel counts as **changed** from class ``a`` (month A's label) to class ``b`` (month B's)
only where

- both months have a prediction and both are confident: ``confidence >= min_confidence * 254``;
- the gain of the new class exceeds its floor: ``p_B[b] - p_A[b] > t[b]``, and
- the loss of the old class exceeds its floor: ``p_A[a] - p_B[a] > t[a]``,

with ``t[k]`` the per-class threshold measured under the null (``nyceo.change.noise``). Under the
null a pixel can only be flagged if ``|dp_b| > t[b]``, which happens for at most the configured
false-alarm rate of pixels: the false-change rate is bounded by construction. Pixels whose labels
differ but that fail a test are **uncertain**; equal labels are **no change**.

Shapes: probability ``(K, *S)``, the rest ``S`` (a 2-D window or a flattened sample).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nyceo.change import codes

SCALE = 254


@dataclass(frozen=True)
class MonthLayers:
    """One month's quantized prediction layers over some pixels."""

    class_map: np.ndarray  # uint8 S, 255 nodata
    probability: np.ndarray  # uint8 (K, *S), p * 254, 255 nodata
    confidence: np.ndarray  # uint8 S, max p * 254, 255 nodata


@dataclass(frozen=True)
class ChangeLayers:
    """The gated change between month A (before) and month B (after)."""

    transition: np.ndarray  # uint8: from*K+to where changed, NO_CHANGE, UNCERTAIN, NODATA
    gain: np.ndarray  # uint8: class gained where changed, else the transition's special code
    loss: np.ndarray  # uint8: class lost where changed, else the transition's special code
    confidence: np.ndarray  # uint8: min over (gained, lost) class of the null CDF at the shift, * 254
    building: np.ndarray | None  # uint8: 0 none, 1 new, 2 vanished, UNCERTAIN, NODATA
    building_dp: np.ndarray | None  # uint8: 127 + round(dp_u8 / 2), NODATA

    @property
    def changed(self) -> np.ndarray:
        return self.transition < codes.NO_CHANGE


def _pick(prob: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """prob[idx[...], ...] as int16 (probability of the class ``idx`` at each pixel)."""
    safe = np.where(idx == codes.NODATA, 0, idx).astype(np.intp)
    return np.take_along_axis(prob, safe[None], axis=0)[0].astype(np.int16)


def gate(a: MonthLayers, b: MonthLayers, thresholds_u8: np.ndarray, min_confidence: float,
         null_cdf: np.ndarray, building_index: int | None = None) -> ChangeLayers:
    """Change layers from ``a`` (before) to ``b`` (after).

    ``thresholds_u8`` (K,) per-class |dp| floor in p*254 units; ``null_cdf`` (K, 256): fraction of
    null pixels with |dp_k| <= v (``nyceo.change.noise.cdf_table``)."""
    k = a.probability.shape[0]
    valid = (a.class_map != codes.NODATA) & (b.class_map != codes.NODATA)
    frm, to = a.class_map, b.class_map
    min_u8 = int(np.ceil(min_confidence * SCALE - 1e-9))
    confident = (a.confidence >= min_u8) & (b.confidence >= min_u8) & valid
    differ = valid & (frm != to)
    gain = _pick(b.probability, to) - _pick(a.probability, to)  # rise of the new class
    loss = _pick(a.probability, frm) - _pick(b.probability, frm)  # fall of the old class
    t = np.asarray(thresholds_u8, dtype=np.int16)
    t_to, t_from = t[np.where(valid, to, 0)], t[np.where(valid, frm, 0)]
    changed = differ & confident & (gain > t_to) & (loss > t_from)
    special = np.full(frm.shape, codes.NODATA, np.uint8)
    special[valid] = codes.NO_CHANGE
    special[differ] = codes.UNCERTAIN
    transition = np.where(changed, codes.transition_code(frm, to, k), special).astype(np.uint8)
    cdf = np.asarray(null_cdf, dtype=np.float64)
    conf_to = cdf[np.where(valid, to, 0), np.clip(gain, 0, 255)]
    conf_from = cdf[np.where(valid, frm, 0), np.clip(loss, 0, 255)]
    conf = np.rint(np.minimum(conf_to, conf_from) * SCALE).astype(np.uint8)
    conf = np.where(differ, conf, 0).astype(np.uint8)
    conf[~valid] = codes.NODATA
    building = building_dp = None
    if building_index is not None:
        building = np.where(valid, codes.BUILDING_NONE, codes.NODATA).astype(np.uint8)
        building[differ & ((to == building_index) | (frm == building_index))] = codes.UNCERTAIN
        building[changed & (to == building_index)] = codes.BUILDING_NEW
        building[changed & (frm == building_index)] = codes.BUILDING_VANISHED
        dp = b.probability[building_index].astype(np.int16) - a.probability[building_index].astype(np.int16)
        building_dp = np.clip(codes.DP_OFFSET + np.rint(dp / 2.0), 0, 254).astype(np.uint8)
        building_dp[~valid] = codes.NODATA
    return ChangeLayers(transition, np.where(changed, to, special).astype(np.uint8),
                        np.where(changed, frm, special).astype(np.uint8), conf, building, building_dp)
