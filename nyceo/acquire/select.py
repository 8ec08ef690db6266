"""Scene search and timestep selection (pure functions over pystac Items and dates).

Sentinel-2: per block, the ``T`` clearest acquisition dates judged by the SCL clear fraction over
the block (scene-level ``eo:cloud_cover`` only pre-filters). Sentinel-1: the dates in the month;
when fewer than ``T`` exist the window widens by ``s1_widen_step_days`` on both sides up to
``s1_max_widen_days``, then the nearest dates are repeated. DEM: static, every intersecting item.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pystac
import shapely

from catalogs.base import SceneCatalog
from nyceo.config import PipelineConfig

Bbox = tuple[float, float, float, float]


def month_bounds(month: str) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of a YYYY-MM month in UTC."""
    y, m = map(int, month.split("-"))
    start = dt.datetime(y, m, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return start, end


def item_date(item: pystac.Item) -> dt.date:
    """Acquisition date (UTC) of an item."""
    when = item.datetime or pystac.utils.str_to_datetime(item.properties["start_datetime"])
    return when.astimezone(dt.timezone.utc).date()


def cloud_filter(max_pct: float) -> dict[str, Any]:
    """CQL2-JSON: eo:cloud_cover <= max_pct."""
    return {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_pct]}


def search_month(
    catalog: SceneCatalog, config: PipelineConfig, bbox_lonlat: Bbox, month: str
) -> dict[str, list[pystac.Item]]:
    """Candidate items of every modality for ``month`` over ``bbox_lonlat`` (one search each).

    S2 is filtered by scene cloud cover (server side via CQL2 and again here, for catalogs that
    ignore filters); S1 is searched over the widest window selection may use; DEM is not dated.
    """
    acq, cat = config.acquire, config.catalog
    start, end = month_bounds(month)
    s2 = catalog.search(cat.s2_collection, bbox_lonlat, start, end, cloud_filter(acq.s2_max_scene_cloud_pct))
    s2 = [i for i in s2 if float(i.properties.get("eo:cloud_cover", 0.0)) <= acq.s2_max_scene_cloud_pct]
    widen = dt.timedelta(days=acq.s1_max_widen_days)
    s1 = catalog.search(cat.s1_collection, bbox_lonlat, start - widen, end + widen)
    dem = catalog.search(
        cat.dem_collection, bbox_lonlat, dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc),
    )
    key = lambda i: (item_date(i), i.id)  # noqa: E731 - deterministic order
    return {"s2": sorted(s2, key=key), "s1": sorted(s1, key=key), "dem": sorted(dem, key=lambda i: i.id)}


def intersecting(items: Sequence[pystac.Item], bbox_lonlat: Bbox) -> list[pystac.Item]:
    """Items whose footprint (geometry, else bbox) intersects ``bbox_lonlat``."""
    box = shapely.box(*bbox_lonlat)
    out = []
    for item in items:
        geom = shapely.geometry.shape(item.geometry) if item.geometry else shapely.box(*item.bbox)
        if geom.intersects(box):
            out.append(item)
    return out


def group_by_date(items: Sequence[pystac.Item]) -> dict[dt.date, list[pystac.Item]]:
    """Items grouped by acquisition date (tiles/frames of one pass are mosaicked), sorted."""
    groups: dict[dt.date, list[pystac.Item]] = {}
    for item in items:
        groups.setdefault(item_date(item), []).append(item)
    return dict(sorted(groups.items()))


def slot_targets(month: str, timesteps: int) -> list[dt.date]:
    """Evenly spaced target dates across the month, one per timestep."""
    start, end = month_bounds(month)
    span = (end - start).days
    return [(start + dt.timedelta(days=span * (i + 0.5) / timesteps)).date() for i in range(timesteps)]


def nearest_fill(dates: Sequence[dt.date], month: str, timesteps: int) -> list[dt.date]:
    """``timesteps`` dates from fewer: each slot takes the date nearest its target (repeats)."""
    if not dates:
        raise ValueError("nearest_fill needs at least one date")
    out = [min(dates, key=lambda d: (abs((d - t).days), d)) for t in slot_targets(month, timesteps)]
    return sorted(out)


def spread(dates: Sequence[dt.date], timesteps: int) -> list[dt.date]:
    """``timesteps`` distinct dates spread evenly over a sorted list of at least that many."""
    idx = np.unique(np.linspace(0, len(dates) - 1, timesteps).round().astype(int))
    return [dates[i] for i in idx]


@dataclass(frozen=True)
class S1Selection:
    """Chosen radar dates and how they were found."""

    dates: list[dt.date]
    window_extra_days: int
    repeated: bool

    def to_dict(self) -> dict[str, Any]:
        return {"dates": [d.isoformat() for d in self.dates], "window_extra_days": self.window_extra_days,
                "repeated": self.repeated}


def select_s1_dates(
    available: Sequence[dt.date], month: str, timesteps: int, step_days: int, max_widen_days: int
) -> S1Selection | None:
    """Radar dates for a month: widen the window step by step, then repeat the nearest.

    Returns None when no date lies within the widest window.
    """
    start, end = (b.date() for b in month_bounds(month))
    available = sorted(set(available))
    extra = 0
    while True:
        lo, hi = start - dt.timedelta(days=extra), end + dt.timedelta(days=extra)
        inside = [d for d in available if lo <= d < hi]
        if len(inside) >= timesteps:
            return S1Selection(spread(inside, timesteps), extra, False)
        if extra >= max_widen_days:
            break
        extra = min(extra + step_days, max_widen_days)
    if not inside:
        return None
    return S1Selection(nearest_fill(inside, month, timesteps), extra, True)


def select_s2_dates(
    clear_fraction: dict[dt.date, float], month: str, timesteps: int, min_clear: float
) -> list[dt.date]:
    """The ``timesteps`` clearest dates (chronological); fewer usable ones are repeated (nearest).

    Returns [] when no date reaches ``min_clear``.
    """
    usable = [d for d, f in clear_fraction.items() if f >= min_clear]
    if not usable:
        return []
    if len(usable) >= timesteps:
        ranked = sorted(usable, key=lambda d: (-clear_fraction[d], d))
        return sorted(ranked[:timesteps])
    return nearest_fill(sorted(usable), month, timesteps)
