"""Seamless blending of overlapping window predictions.

Each window's probabilities are weighted by a separable 2-D taper ``w(y) * w(x)`` that is largest
in the window centre and falls to ``floor`` at its borders, and accumulated as ``sum(w * p)`` and
``sum(w)``; the blend is their ratio. Because the ratio is normalized, a pixel covered by a single
window (the area's edges) gets exactly that window's prediction, and the blend of probability
vectors is again a probability vector. With a Hann taper and 50 % overlap the weights of the
windows covering an interior pixel already sum to one (sin^2 + cos^2), and each window's influence
fades continuously to (almost) zero at its border, so window borders leave no seam.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

TaperKind = Literal["hann", "triangular", "box"]


def taper_1d(size_px: int, kind: TaperKind = "hann", floor: float = 1e-3) -> np.ndarray:
    """Per-pixel weights along one window axis, in ``[floor, 1]`` (float64).

    ``box`` is the uniform weight (plain averaging); it leaves seams and exists as a reference.
    """
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"blend floor {floor} must be in (0, 1]; a zero weight leaves edge pixels unpredicted")
    t = (np.arange(size_px, dtype=np.float64) + 0.5) / size_px
    if kind == "hann":
        raw = np.sin(np.pi * t) ** 2
    elif kind == "triangular":
        raw = 1.0 - np.abs(2.0 * t - 1.0)
    elif kind == "box":
        raw = np.ones(size_px)
    else:
        raise ValueError(f"unknown blend taper '{kind}'; use hann, triangular or box")
    return floor + (1.0 - floor) * raw


def taper_2d(size_px: int, kind: TaperKind = "hann", floor: float = 1e-3) -> np.ndarray:
    """Separable 2-D window weights ``w(y) * w(x)`` as float32 (size, size)."""
    w = taper_1d(size_px, kind, floor)
    return np.outer(w, w).astype(np.float32)


class BlendAccumulator:
    """Accumulates weighted window probabilities over a box ``[y0, y1) x [x0, x1)`` of area pixels.

    Window parts outside the box are dropped, so a block only holds its own interior. Windows must
    be added in a fixed global order (e.g. raster order of their global origin) for results that
    are bitwise identical whatever the box.
    """

    def __init__(self, n_classes: int, box: tuple[int, int, int, int], weights: np.ndarray) -> None:
        self.y0, self.y1, self.x0, self.x1 = box
        shape = (self.y1 - self.y0, self.x1 - self.x0)
        self.weights = weights.astype(np.float32)
        self.num = np.zeros((n_classes, *shape), dtype=np.float32)
        self.den = np.zeros(shape, dtype=np.float32)

    def add(self, probs: np.ndarray, oy: int, ox: int) -> None:
        """Add one window's probabilities ``[K, s, s]`` whose top-left pixel is area pixel (oy, ox)."""
        s = self.weights.shape[0]
        ya, yb = max(oy, self.y0), min(oy + s, self.y1)
        xa, xb = max(ox, self.x0), min(ox + s, self.x1)
        if ya >= yb or xa >= xb:
            return
        w = self.weights[ya - oy : yb - oy, xa - ox : xb - ox]
        p = probs[:, ya - oy : yb - oy, xa - ox : xb - ox]
        dst = (slice(ya - self.y0, yb - self.y0), slice(xa - self.x0, xb - self.x0))
        self.num[(slice(None), *dst)] += w * p
        self.den[dst] += w

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(blended probabilities [K, h, w] float32, covered mask [h, w]); uncovered pixels are 0."""
        covered = self.den > 0
        out = np.zeros_like(self.num)
        np.divide(self.num, self.den, out=out, where=covered)
        return out, covered


def quantize(prob: np.ndarray, valid: np.ndarray, nodata: int = 255) -> dict[str, np.ndarray]:
    """Quantize blended probabilities [K, h, w] to the pred store's uint8 layers.

    ``probability`` = round(p * 254), ``confidence`` = round(max p * 254), ``class_map`` = argmax;
    pixels where ``valid`` is False are ``nodata`` in every layer.
    """
    scale = float(nodata - 1)
    probability = np.rint(np.clip(prob, 0.0, 1.0) * scale).astype(np.uint8)
    class_map = np.argmax(prob, axis=0).astype(np.uint8)
    confidence = np.rint(np.clip(prob.max(axis=0), 0.0, 1.0) * scale).astype(np.uint8)
    probability[:, ~valid] = nodata
    class_map[~valid] = nodata
    confidence[~valid] = nodata
    return {"class_map": class_map, "probability": probability, "confidence": confidence}
