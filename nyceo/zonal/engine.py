"""Zonal class areas of one prediction store per polygon layer, from cached coverage fractions.

For each zone ``z`` and class ``k`` (pixel area ``a``, coverage matrix ``C``):

- ``zone_km2``      = a * sum_p C[z, p]            (the zone's area on the grid)
- ``mapped_km2``    = a * sum_p C[z, p] [class_map != 255]; ``nodata_km2`` = zone - mapped
- ``<k>_km2``       = a * sum_p C[z, p] [class_map == k]; ``<k>_share`` = <k>_km2 / mapped_km2
- ``<k>_p_km2``     = a * sum_p C[z, p] p_k(p)     (probability-weighted, expected area)
- ``impervious_*`` / ``vegetation_*``: the class groups of the configuration, when the adapter has them
- with an evaluation error matrix: ``<k>_share_adj``, ``<k>_share_lo``, ``<k>_share_hi`` (95 %)

The class sums of a zone add up to its mapped area exactly (up to float rounding): every pixel has
one class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nyceo.zonal.accuracy import ErrorMatrix, adjusted_shares
from nyceo.zonal.coverage import Compact, RasterGrid

NODATA = 255
PROB_SCALE = 254.0
P_VALUE = np.where(np.arange(256) == NODATA, 0.0, np.arange(256) / PROB_SCALE)  # u8 -> p (float64)


@dataclass(frozen=True)
class Groups:
    impervious: tuple[str, ...]
    vegetation: tuple[str, ...]


def class_area_table(compact: Compact, grid: RasterGrid, class_map: np.ndarray, classes: list[str],
                     probability: dict[str, np.ndarray] | None, groups: Groups,
                     error_matrix: ErrorMatrix | None = None, ci_level: float = 0.95) -> pd.DataFrame:
    """Per-zone areas (km²) and shares of each class (see the module docstring for the columns).

    Each layer (the class map, each probability layer) costs one gather at the coverage's pixels and
    one 256-bin histogram per zone; the columns are sums and dot products of those histograms."""
    km2 = grid.pixel_area_m2 / 1e6
    n = len(classes)
    hist = compact.histograms(compact.gather(_uint8(class_map, "class_map"))) * km2
    per_class = hist[:, :n]  # values 255 (nodata) and any outside the class list are not mapped
    mapped, nodata = per_class.sum(axis=1), hist[:, n:].sum(axis=1)
    out: dict[str, np.ndarray] = {"zone_km2": mapped + nodata, "mapped_km2": mapped, "nodata_km2": nodata}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, name in enumerate(classes):
            out[f"{name}_km2"] = per_class[:, k]
            out[f"{name}_share"] = per_class[:, k] / mapped
        for name in classes:
            if probability is not None and name in probability:
                p_hist = compact.histograms(compact.gather(_uint8(probability[name], f"probability[{name}]")))
                out[f"{name}_p_km2"] = (p_hist @ P_VALUE) * km2
        for group, members in (("impervious", groups.impervious), ("vegetation", groups.vegetation)):
            present = [c for c in members if c in classes]
            if present:
                out[f"{group}_km2"] = sum(out[f"{c}_km2"] for c in present)
                out[f"{group}_share"] = out[f"{group}_km2"] / mapped
    table = pd.DataFrame(out)
    if error_matrix is not None and list(error_matrix.classes) == list(classes):
        shares = table[[f"{c}_share" for c in classes]].to_numpy()
        est, lo, hi = adjusted_shares(error_matrix, shares, ci_level)
        for k, name in enumerate(classes):
            table[f"{name}_share_adj"], table[f"{name}_share_lo"], table[f"{name}_share_hi"] = est[:, k], lo[:, k], hi[:, k]
    return table


def _uint8(raster: np.ndarray, what: str) -> np.ndarray:
    if raster.dtype != np.uint8:
        raise TypeError(f"zonal {what} must be uint8 (the prediction store's dtype), got {raster.dtype}")
    return raster


def read_prediction(store, classes: list[str], wanted_prob: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The whole class map and the probability layers of ``wanted_prob`` of an opened pred store."""
    group = store.group
    class_map = np.asarray(group["class_map"][:], dtype=np.uint8)
    prob = {c: np.asarray(group["probability"][classes.index(c)], dtype=np.uint8) for c in wanted_prob}
    return class_map, prob


def block_counts(mask: np.ndarray, valid: np.ndarray, factor: int, offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(count of ``mask``, count of ``valid``) per ``factor`` x ``factor`` cell; ``offset`` = (y, x) pixels
    of padding before the raster so that cells align with the feed lattice."""
    oy, ox = offset
    h, w = mask.shape
    hh = -(-(h + oy) // factor) * factor
    ww = -(-(w + ox) // factor) * factor
    out = []
    for arr in (mask & valid, valid):
        pad = np.zeros((hh, ww), dtype=np.uint16)
        pad[oy:oy + h, ox:ox + w] = arr
        out.append(pad.reshape(hh // factor, factor, ww // factor, factor).sum(axis=(1, 3)))
    return out[0], out[1]
