"""Harmonization: Sentinel-2 baseline offset, SCL validity, Sentinel-1 dB, temporal gap filling.

Validity flags (uint8, per timestep and pixel): 0 no usable observation (no data, or not clear and
not fillable; an observed value is kept, nodata stays nodata), 1 observed clear, 2 filled from the
nearest other timestep (in days) that is clear at that pixel.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import pystac

S2_NODATA = np.int16(-32768)
FLAG_NODATA, FLAG_CLEAR, FLAG_FILLED = np.uint8(0), np.uint8(1), np.uint8(2)


def _baseline(item: pystac.Item) -> float | None:
    raw = item.properties.get("s2:processing_baseline")
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def needs_offset(item: pystac.Item, offset_start: str) -> bool:
    """True when the scene's L2A digital numbers carry BOA_ADD_OFFSET (baseline >= 04.00).

    Uses ``s2:processing_baseline`` when the item has it, else the acquisition date against
    ``offset_start`` (the first baseline-04.00 date, 2022-01-25).
    """
    baseline = _baseline(item)
    if baseline is not None:
        return baseline >= 4.0
    when = item.datetime.astimezone(dt.timezone.utc).date()
    return when >= dt.date.fromisoformat(offset_start)


def harmonize_s2(dn: np.ndarray, offset_dn: int) -> np.ndarray:
    """uint16 L2A DN (0 = nodata) -> int16 harmonized DN with the offset removed, nodata -32768.

    Like the processor's own recipe, values below the offset clip to 0 rather than going negative.
    Computed in uint16 (saturating subtraction, then capped at 32767), without wider intermediates.
    """
    dn = np.asarray(dn)
    if dn.dtype != np.uint16:
        dn = np.clip(dn, 0, np.iinfo(np.uint16).max).astype(np.uint16)
    if offset_dn > 0:
        work = np.maximum(dn, np.uint16(offset_dn))
        work -= np.uint16(offset_dn)
    else:
        work = dn.copy()
    np.minimum(work, np.uint16(np.iinfo(np.int16).max), out=work)
    out = work.view(np.int16)
    out[dn == 0] = S2_NODATA
    return out


def scl_clear(scl: np.ndarray, not_clear: Sequence[int]) -> np.ndarray:
    """Boolean mask: SCL class is clear (not in ``not_clear``, which includes 0 = no data)."""
    return ~np.isin(scl, np.asarray(list(not_clear), dtype=scl.dtype))


def to_db(power: np.ndarray) -> np.ndarray:
    """Linear backscatter power -> dB (10 log10); non-positive or missing -> NaN."""
    power = power.astype(np.float32, copy=False)
    out = np.full(power.shape, np.nan, dtype=np.float32)
    ok = np.isfinite(power) & (power > 0)
    np.log10(power, out=out, where=ok)
    out[ok] *= 10.0
    return out


def temporal_fill(
    data: np.ndarray, valid: np.ndarray, dates: Sequence[dt.date]
) -> np.ndarray:
    """Fill invalid pixels of each timestep from the nearest valid timestep, in place.

    ``data`` (time, band, y, x); ``valid`` (time, y, x) bool. Returns the uint8 flags (time, y, x).
    """
    n_t = data.shape[0]
    flags = np.where(valid, FLAG_CLEAR, FLAG_NODATA).astype(np.uint8)
    for t in range(n_t):
        need = ~valid[t]
        if not need.any():
            continue
        order = sorted((c for c in range(n_t) if c != t), key=lambda c: (abs((dates[c] - dates[t]).days), c))
        for c in order:
            take = need & valid[c]
            if take.any():
                data[t][:, take] = data[c][:, take]
                flags[t][take] = FLAG_FILLED
                need &= ~take
            if not need.any():
                break
    return flags
