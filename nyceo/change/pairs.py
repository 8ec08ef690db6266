"""Which months a change layer compares, and whether they may be compared at all.

``mom`` compares M with M-1, ``yoy`` M with M-12. A pair is computed only when the predecessor's
prediction store is published (``nyceo.infer.contract.published_pred``) and compatible: made with
the same adapter files (``provenance.model.sha256``: comparing months made with other weights mixes
algorithm change into land change, as WorldCover v100/v200 did) and on the same grid (CRS, pixel
centres, shape) with the same classes. Otherwise the pair is skipped with a typed reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr

from nyceo.config import PipelineConfig
from nyceo.contract import shift_month
from nyceo.infer.contract import published_pred

PAIR_OFFSETS: dict[str, int] = {"mom": -1, "yoy": -12}
SkipReason = Literal["predecessor_missing", "other_adapter_files", "other_grid", "other_classes"]


class ChangeInputError(ValueError):
    """The month's own prediction store is missing or unreadable."""


@dataclass(frozen=True)
class StoreInfo:
    """What pair selection needs to know about one published prediction store."""

    month: str
    path: str
    key: str
    sha256: dict[str, str]
    classes: tuple[str, ...]
    grid: dict[str, Any]


@dataclass(frozen=True)
class PairChoice:
    pair: str
    current: StoreInfo
    previous: StoreInfo | None
    skip_reason: SkipReason | None = None
    skip_detail: str = ""

    @property
    def skipped(self) -> bool:
        return self.skip_reason is not None


def store_info(config: PipelineConfig, month: str, adapter: str) -> StoreInfo | None:
    """The published store of ``adapter`` for ``month`` (None when none is published)."""
    found = published_pred(config, month, adapter)
    if found is None:
        return None
    path, key = found
    g = zarr.open_group(path, mode="r")
    prov = g.attrs.get("provenance", {})
    prov = json.loads(prov) if isinstance(prov, str) else dict(prov)
    y, x = np.asarray(g["y"][:]), np.asarray(g["x"][:])
    ref = dict(g["spatial_ref"].attrs) if "spatial_ref" in g else {}
    grid = {"crs": ref.get("crs_wkt") or ref.get("spatial_ref"), "shape": [int(y.size), int(x.size)],
            "y0": float(y[0]), "x0": float(x[0]), "dy": float(y[1] - y[0]) if y.size > 1 else 0.0,
            "dx": float(x[1] - x[0]) if x.size > 1 else 0.0}
    sha = dict((prov.get("model") or {}).get("sha256") or {})
    classes = tuple(str(c) for c in np.asarray(g["class"][:]).tolist())
    return StoreInfo(month, path, key, sha, classes, grid)


def current_store(config: PipelineConfig, month: str, adapter: str) -> StoreInfo:
    info = store_info(config, month, adapter)
    if info is None:
        raise ChangeInputError(
            f"no published prediction store of adapter '{adapter}' for {month}; run "
            f"`nyceo infer --month {month} -c CONFIG` first (change layers compare published stores only)")
    return info


def choose(config: PipelineConfig, month: str, adapter: str, pair: str, current: StoreInfo) -> PairChoice:
    """The predecessor of ``pair`` for ``month``, or a typed skip reason."""
    if pair not in PAIR_OFFSETS:
        raise ValueError(f"unknown change pair '{pair}'; use one of {list(PAIR_OFFSETS)}")
    prev_month = shift_month(month, PAIR_OFFSETS[pair])
    prev = store_info(config, prev_month, adapter)
    if prev is None:
        return PairChoice(pair, current, None, "predecessor_missing",
                          f"no published prediction store of '{adapter}' for {prev_month}")
    if prev.sha256 != current.sha256 or not current.sha256:
        return PairChoice(pair, current, prev, "other_adapter_files",
                          f"{prev_month} was predicted with adapter files {prev.sha256 or 'unknown'}, {month} with "
                          f"{current.sha256 or 'unknown'}: a difference would mix model change into land change")
    if prev.grid != current.grid:
        return PairChoice(pair, current, prev, "other_grid",
                          f"{prev_month} is on grid {prev.grid}, {month} on {current.grid}")
    if prev.classes != current.classes:
        return PairChoice(pair, current, prev, "other_classes",
                          f"{prev_month} has classes {list(prev.classes)}, {month} {list(current.classes)}")
    return PairChoice(pair, current, prev)
