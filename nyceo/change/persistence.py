"""Persistence of change (MapBiomas-style temporal rule): provisional, confirmed or dropped.

Month-over-month (A = M-1, B = M): a change a -> b is **provisional** until the following months
M+1 .. M+w (``change.persistence.window_months``) are published; it is **confirmed** when every
one of them shows b, **dropped** when any shows a again (the middle step disagreeing with both
ends is reset, as in MapBiomas' temporal filter), and stays provisional otherwise.

Year-over-year (A = M-12, B = M): the months within ``yoy_neighbour_months`` of M-12 and of M
that are published (never M-12 and M themselves) must agree: confirmed when, with at least one
such month on each side, those around M-12 all show a and those around M all show b; dropped
when one around M-12 already shows b or one around M still shows a; otherwise provisional.

The result is a separate, keyed output (key = the pair's key + the neighbour months' pred keys),
recomputed by whichever run sees a new neighbour month: the run for M writes it with what
exists, the run for M+1 (.. M+w) refreshes M's. The change layers themselves never change, so
every output stays a pure function of its key.
"""

from __future__ import annotations

import numpy as np

from nyceo.change import codes
from nyceo.contract import shift_month


def mom_neighbours(month: str, window: int) -> list[str]:
    """Months that confirm M's month-over-month change: M+1 .. M+w."""
    return [shift_month(month, i) for i in range(1, window + 1)]


def yoy_neighbours(month: str, n: int) -> tuple[list[str], list[str]]:
    """(months around M-12, months around M) within ``n`` months, excluding M-12 and M."""
    offs = [o for o in range(-n, n + 1) if o != 0]
    return [shift_month(month, -12 + o) for o in offs], [shift_month(month, o) for o in offs]


def _from_to(transition: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    changed = transition < n_classes * n_classes
    code = np.where(changed, transition, 0).astype(np.int16)
    return changed, code // n_classes, code % n_classes


def _base(transition: np.ndarray, changed: np.ndarray) -> np.ndarray:
    out = np.where(changed, codes.PERSIST_PROVISIONAL, codes.PERSIST_NONE).astype(np.uint8)
    out[transition == codes.NODATA] = codes.NODATA
    return out


def mom_status(transition: np.ndarray, n_classes: int, following: list[np.ndarray], window: int) -> np.ndarray:
    """uint8 persistence of month-over-month changes given the following months' class maps
    (in order, only those published; fewer than ``window`` leaves agreeing changes provisional)."""
    changed, frm, to = _from_to(transition, n_classes)
    out = _base(transition, changed)
    if not following:
        return out
    back = np.zeros(transition.shape, bool)
    agree = np.ones(transition.shape, bool)
    for cmap in following:
        back |= cmap == frm
        agree &= cmap == to
    if len(following) >= window:
        out[changed & agree] = codes.PERSIST_CONFIRMED
    out[changed & back] = codes.PERSIST_DROPPED
    return out


def yoy_status(transition: np.ndarray, n_classes: int, before: list[np.ndarray], after: list[np.ndarray]) -> np.ndarray:
    """uint8 persistence of year-over-year changes given the published class maps around M-12
    (``before``) and around M (``after``)."""
    changed, frm, to = _from_to(transition, n_classes)
    out = _base(transition, changed)
    agree = np.ones(transition.shape, bool)
    against = np.zeros(transition.shape, bool)
    for cmap in before:
        agree &= cmap == frm
        against |= cmap == to
    for cmap in after:
        agree &= cmap == to
        against |= cmap == frm
    if before and after:
        out[changed & agree] = codes.PERSIST_CONFIRMED
    out[changed & against] = codes.PERSIST_DROPPED
    return out
