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
import scipy.sparse as sp

from nyceo.zonal.accuracy import ErrorMatrix, adjusted_shares
from nyceo.zonal.coverage import Compact, RasterGrid

NODATA = 255
PROB_SCALE = 254.0
P_LUT = np.where(np.arange(256) == NODATA, 0.0, np.arange(256) / PROB_SCALE).astype(np.float32)  # u8 -> p


@dataclass(frozen=True)
class Groups:
    impervious: tuple[str, ...]
    vegetation: tuple[str, ...]


def class_area_table(compact: Compact, grid: RasterGrid, class_map: np.ndarray, classes: list[str],
                     probability: dict[str, np.ndarray] | None, groups: Groups,
                     error_matrix: ErrorMatrix | None = None, ci_level: float = 0.95) -> pd.DataFrame:
    """Per-zone areas (km²) and shares of each class (see the module docstring for the columns)."""
    km2 = grid.pixel_area_m2 / 1e6
    n = len(classes)
    cm = compact.gather(class_map)
    codes = np.where(cm < n, cm, n)  # 255 (nodata) and any value outside the class list -> not mapped
    per_code = compact.code_sums(codes, n + 1) * km2
    mapped = per_code[:, :n].sum(axis=1)
    out: dict[str, np.ndarray] = {"zone_km2": per_code.sum(axis=1), "mapped_km2": mapped, "nodata_km2": per_code[:, n]}
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, name in enumerate(classes):
            out[f"{name}_km2"] = per_code[:, k]
            out[f"{name}_share"] = out[f"{name}_km2"] / mapped
        for k, name in enumerate(classes):
            if probability is not None and name in probability:
                p = P_LUT[compact.gather(probability[name])]
                out[f"{name}_p_km2"] = compact.sums(p) * km2
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
