"""Synthetic Sentinel-1 RTC scenes of the embedded city, shaped like Planetary Computer's.

Assets ``vv`` and ``vh``: float32 gamma0 in LINEAR power (not dB), 10 m, EPSG:32618, nodata
-32768 as on Planetary Computer. Backscatter follows land cover (bright buildings, dark calm
water whose roughness changes with the wind of the day, seasonal vegetation), with multiplicative
speckle (20 m correlation). Dates follow the real constellation (``missions.py``): S1A every
12 days from October 2014, plus S1B (Sept 2016 – Dec 2021) and S1C (from May 2025) 6 days apart,
so 2022–2024 months hold only 2–3 radar dates. Values are rounded to 8 significant bits
(≈ 0.03 dB) so the COGs compress well.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from scipy.special import ndtri

from catalogs.embedded.missions import s1_platform
from catalogs.embedded.landscape import TEXTURE_LEVELS, Landscape
from catalogs.embedded.sentinel2 import season

NODATA = -32768.0
S1A_ANCHOR = dt.datetime(2017, 1, 4, 22, 58, 11, tzinfo=dt.timezone.utc)
REPEAT_DAYS = 12
# linear gamma0 (VV, VH) per class: water, developed, forest, herbaceous, other, buildings
BACKSCATTER = np.array([
    [0.006, 0.0009], [0.20, 0.035], [0.10, 0.028], [0.055, 0.012], [0.035, 0.006], [0.55, 0.075],
], np.float32)


@dataclass(frozen=True)
class S1Acquisition:
    datetime: dt.datetime
    platform: str
    absolute_orbit: int

    @property
    def item_id(self) -> str:
        a = self.datetime.strftime("%Y%m%dT%H%M%S")
        b = (self.datetime + dt.timedelta(seconds=25)).strftime("%Y%m%dT%H%M%S")
        return f"{self.platform}_IW_GRDH_1SDV_{a}_{b}_{self.absolute_orbit:06d}_rtc"


def _month_bounds(year: int, month: int) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    return start, dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)


def s1_acquisitions(year: int, month: int, sparse: bool = False,
                    until: dt.datetime | None = None) -> list[S1Acquisition]:
    """Radar acquisitions of one month by live platforms, before ``until`` (the catalog's "now");
    ``sparse`` keeps only the first (a radar-poor month)."""
    start, end = _month_bounds(year, month)
    end = min(end, until) if until is not None else end
    out = []
    k = int(np.floor((start - S1A_ANCHOR) / dt.timedelta(days=REPEAT_DAYS)))
    while (t := S1A_ANCHOR + dt.timedelta(days=REPEAT_DAYS * k)) < end:
        for slot, when in enumerate((t, t + dt.timedelta(days=REPEAT_DAYS // 2))):
            platform = s1_platform(slot, when)
            if platform is not None and start <= when < end:
                out.append(S1Acquisition(when, platform, 15000 + 175 * k))
        k += 1
    out.sort(key=lambda a: a.datetime)
    return out[:1] if sparse else out


def render_s1(land: Landscape, acq: S1Acquisition, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{"vv": float32, "vh": float32} linear gamma0 on the 10 m grid.

    Speckle is one of 64 log-normal levels per 20 m pixel; the value of every pixel comes from a
    lookup table (surface class x speckle level), so rendering is one gather per polarization."""
    table = BACKSCATTER.copy()
    table[0] *= rng.uniform(0.5, 3.0)                         # wind roughens the water
    table[2:4] *= 0.75 + 0.25 * season(acq.datetime)          # leaf-off vegetation is darker
    levels = np.exp(0.45 * ndtri((np.arange(64) + 0.5) / 64) - 0.1).astype(np.float32)
    surface = land.code(10) // TEXTURE_LEVELS                  # 0..5, 5 = buildings
    h, w = surface.shape
    out = {}
    for p, key in enumerate(("vv", "vh")):
        lut = (table[:, p][:, None] * levels[None, :]).astype(np.float32)
        lut = (lut.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # 8 significant bits
        speckle = rng.integers(0, 64, ((h + 1) // 2, (w + 1) // 2), dtype=np.uint8)
        speckle = np.repeat(np.repeat(speckle, 2, axis=0), 2, axis=1)[:h, :w]
        out[key] = lut.ravel()[surface.astype(np.uint16) * 64 + speckle]
    return out
