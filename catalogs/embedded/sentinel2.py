"""Synthetic Sentinel-2 L2A scenes of the embedded city, shaped like Planetary Computer's.

Per scene: assets B01…B12 (no B10) at native resolution (10 m B02/B03/B04/B08; 20 m B05/B06/B07/
B8A/B11/B12 and SCL; 60 m B01/B09), uint16 digital numbers, nodata 0. Surface reflectance follows
land cover and season (vegetation greens up toward July), clouds are bright with SCL 8/9, cirrus
SCL 10, shadows SCL 3 (darkened), and scenes from 2022-01-25 on carry BOA_ADD_OFFSET = +1000
(processing baseline 05.10). Every third acquisition comes from the neighbouring orbit whose
swath edge cuts the city (nodata 0, SCL 0 beyond it). Platforms and dates follow the real
missions as Planetary Computer holds them (``missions.py``): none before November 2016.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from catalogs.embedded.missions import s2_platform
from catalogs.embedded.landscape import TEXTURE_LEVELS, TEXTURE_Z, CityGrid, Landscape, smooth_noise

BANDS_RES_M: dict[str, float] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}
OFFSET_START = dt.datetime(2022, 1, 25, tzinfo=dt.timezone.utc)
BOA_ADD_OFFSET = 1000
ANCHOR = dt.datetime(2017, 1, 2, 15, 49, 21, tzinfo=dt.timezone.utc)
REVISIT_DAYS = 5
SCL_CLEAR = {0: 6, 1: 5, 2: 4, 3: 4, 4: 5, 5: 5}   # surface class -> SCL (6 water, 4 veg, 5 not veg)
# Reflectance x 10000, band order as BANDS_RES_M. Vegetation: dormant (winter) and green (July).
_B = list(BANDS_RES_M)
SPECTRA = np.array([
    [450, 520, 620, 450, 380, 330, 300, 280, 260, 150, 110, 90],            # 0 water
    [1150, 1100, 1200, 1300, 1420, 1560, 1650, 1750, 1800, 900, 2150, 1950],  # 1 paved / roads
    [350, 320, 620, 330, 950, 2500, 3150, 3450, 3550, 1250, 1750, 850],     # 2 forest (green)
    [450, 480, 820, 620, 1250, 2400, 2800, 3000, 3100, 1150, 2300, 1350],   # 3 herbaceous (green)
    [1050, 1050, 1350, 1650, 1900, 2100, 2250, 2400, 2500, 1200, 3250, 2850],  # 4 bare
    [1500, 1550, 1650, 1750, 1850, 1950, 2000, 2050, 2100, 1000, 2400, 2200],  # 5 roofs
], np.float32)
DORMANT = np.array([[600, 600, 800, 900, 1200, 1500, 1650, 1800, 1850, 900, 2300, 1700],
                    [650, 700, 950, 1100, 1400, 1650, 1750, 1850, 1900, 950, 2600, 2000]], np.float32)
CLOUD = np.array([7600, 7500, 7400, 7400, 7300, 7200, 7100, 7000, 6900, 4000, 4600, 3200], np.float32)
TEXTURE_AMP = np.array([0.01, 0.03, 0.03, 0.03, 0.03, 0.04], np.float32)


@dataclass(frozen=True)
class S2Acquisition:
    datetime: dt.datetime
    cycle: int
    partial: bool

    @property
    def baseline(self) -> str:
        return "05.10" if self.datetime >= OFFSET_START else "03.00"

    @property
    def offset_dn(self) -> int:
        return BOA_ADD_OFFSET if self.datetime >= OFFSET_START else 0

    @property
    def platform(self) -> str | None:
        """Who flew this revisit cycle (missions.py); None: no platform in PC's archive then."""
        return s2_platform(self.cycle, self.datetime)

    @property
    def relative_orbit(self) -> int:
        return 54 if self.partial else 11

    @property
    def item_id(self) -> str:
        stamp = self.datetime.strftime("%Y%m%dT%H%M%S")
        proc = (self.datetime + dt.timedelta(hours=6)).strftime("%Y%m%dT%H%M%S")
        return f"S2{self.platform[-1]}_MSIL2A_{stamp}_R{self.relative_orbit:03d}_T18TWL_{proc}"


def s2_acquisitions(year: int, month: int, until: dt.datetime | None = None) -> list[S2Acquisition]:
    """The acquisitions of one month: a 5-day revisit (the two orbit slots alternate); every third
    from the edge orbit. Only cycles flown by a live platform (``missions.py``) and acquired before
    ``until`` (the catalog's "now": no scene of the future) exist."""
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    end = min(end, until) if until is not None else end
    k = int(np.ceil((start - ANCHOR) / dt.timedelta(days=REVISIT_DAYS)))
    out = []
    while (t := ANCHOR + dt.timedelta(days=REVISIT_DAYS * k)) < end:
        if t >= start and s2_platform(k, t) is not None:
            out.append(S2Acquisition(t, k, partial=k % 3 == 2))
        k += 1
    return out


def season(when: dt.datetime) -> float:
    """0 in late January … 1 in late July."""
    doy = when.timetuple().tm_yday
    return float(0.5 - 0.5 * np.cos(2 * np.pi * (doy - 20) / 365.25))


def month_spectra(when: dt.datetime) -> np.ndarray:
    """Spectra (class, band) for the date: vegetation mixes dormant and green by season."""
    s = season(when)
    table = SPECTRA.copy()
    table[2] = DORMANT[0] + (0.15 + 0.85 * s) * (SPECTRA[2] - DORMANT[0])
    table[3] = DORMANT[1] + (0.3 + 0.7 * s) * (SPECTRA[3] - DORMANT[1])
    return table


@dataclass
class S2Masks:
    """Per-scene fields at 20 m: cloud opacity, cirrus, shadow; swath-edge cut per row."""

    alpha: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    first_valid_col_20m: np.ndarray | None   # per 20 m row: first column with data (partial scenes)
    edge_cols_10m: tuple[float, float] | None   # swath edge column at the top and bottom rows

    def first_valid_col(self, res_m: float) -> np.ndarray | None:
        """Per row at ``res_m``: the first column with data (nests like the 10/20/60 m grids)."""
        c = self.first_valid_col_20m
        if c is None:
            return None
        if res_m == 10:
            return np.repeat(2 * c, 2)
        if res_m == 20:
            return c
        return np.ceil((c[1::3] - 1) / 3).astype(np.int64)

    def affected(self, res_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Flat indices at ``res_m`` touched by cloud, cirrus or shadow, and those fields there."""
        if res_m == 60:
            a, c, s = (m[1::3, 1::3] for m in (self.alpha, self.cirrus, self.shadow))
            idx = np.flatnonzero((a > 0) | c | s)
            return idx, a.ravel()[idx], c.ravel()[idx], s.ravel()[idx]
        idx20 = np.flatnonzero((self.alpha > 0) | self.cirrus | self.shadow)
        fields = [m.ravel()[idx20] for m in (self.alpha, self.cirrus, self.shadow)]
        if res_m == 20:
            return (idx20, *fields)
        w20 = self.alpha.shape[1]
        r, q = np.divmod(idx20, w20)
        w10 = 2 * w20
        idx = np.concatenate([(2 * r + dy) * w10 + 2 * q + dx for dy in (0, 1) for dx in (0, 1)])
        return (idx, *(np.tile(f, 4) for f in fields))


def blank_outside(arr: np.ndarray, first_valid_col: np.ndarray | None) -> np.ndarray:
    """Zero (nodata) every pixel left of the swath edge."""
    if first_valid_col is not None:
        for row, col in enumerate(first_valid_col[: arr.shape[0]]):
            arr[row, : max(0, min(int(col), arr.shape[1]))] = 0
    return arr


def scene_masks(grid: CityGrid, acq: S2Acquisition, rng: np.random.Generator, all_cloud: bool) -> S2Masks:
    h, w = grid.shape(20)
    cut, edge = None, None
    if acq.partial:
        slope = np.tan(np.deg2rad(12.0))
        top = w * rng.uniform(0.35, 0.6)
        cut = np.ceil(top - slope * np.arange(h)).astype(np.int64)
        edge = (2 * top, 2 * (top - slope * h))
    u = rng.random()
    frac = rng.uniform(0, 0.05) if u < 0.35 else rng.uniform(0.05, 0.4) if u < 0.7 else rng.uniform(0.4, 0.95)
    field = smooth_noise(rng, (h, w), 20, 1920) + 0.5 * smooth_noise(rng, (h, w), 20, 480)
    thresh = np.quantile(field[::8, ::8], 1 - frac)
    alpha = np.clip((field - thresh) / 0.6, 0, 1).astype(np.float32)
    if all_cloud:
        alpha = np.maximum(alpha, np.float32(0.8))
    cirrus_field = smooth_noise(rng, (h, w), 20, 960)
    cirrus = (cirrus_field > (2.0 if rng.random() < 0.4 else 99)) & (alpha == 0)
    dy, dx = 15, 10   # shadows fall 300 m north and 200 m east of the cloud
    shifted = np.zeros_like(alpha)
    shifted[: h - dy, dx:] = alpha[dy:, : w - dx]
    shadow = (shifted > 0.3) & (alpha == 0) & ~cirrus
    return S2Masks(alpha, cirrus, shadow, cut, edge)


def scl(land: Landscape, masks: S2Masks) -> np.ndarray:
    """The scene classification layer (20 m, uint8)."""
    lut = np.array([SCL_CLEAR[c // TEXTURE_LEVELS] for c in range(6 * TEXTURE_LEVELS)], np.uint8)
    out = lut[land.code(20)]
    out[masks.shadow] = 3
    out[masks.cirrus] = 10
    out[masks.alpha > 0] = 8
    out[masks.alpha >= 0.5] = 9
    return blank_outside(out, masks.first_valid_col(20))


def cloud_cover_pct(scl_arr: np.ndarray) -> float:
    """eo:cloud_cover as the share of SCL 8/9/10 among pixels with data."""
    valid = scl_arr != 0
    n = int(valid.sum())
    return 0.0 if n == 0 else round(100.0 * float(np.isin(scl_arr[valid], (8, 9, 10)).mean()), 4)


def _band(land: Landscape, masks: S2Masks, b: int, res_m: float, table: np.ndarray,
          gain: float, offset_dn: int) -> np.ndarray:
    classes = np.arange(6 * TEXTURE_LEVELS) // TEXTURE_LEVELS
    z = TEXTURE_Z[np.arange(6 * TEXTURE_LEVELS) % TEXTURE_LEVELS]
    refl_lut = table[classes, b] * (1 + TEXTURE_AMP[classes] * z) * gain
    lut = np.clip(np.rint(refl_lut) + offset_dn, 1, 65535).astype(np.uint16)
    dn = lut[land.code(res_m)]
    idx, alpha, cirrus, shadow = masks.affected(res_m)
    refl = refl_lut[land.code(res_m).ravel()[idx]]
    refl = np.where(shadow, refl * 0.4, refl) + np.where(cirrus, 600 if b < 9 else 300, 0)
    refl = refl * (1 - alpha) + CLOUD[b] * alpha
    dn.ravel()[idx] = np.clip(np.rint(refl) + offset_dn, 1, 65535).astype(np.uint16)
    return blank_outside(dn, masks.first_valid_col(res_m))

def render_s2(land: Landscape, acq: S2Acquisition, masks: S2Masks,
              rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, float]]:
    """(asset key, uint16 array, resolution m) for every band of the scene, then SCL."""
    table = month_spectra(acq.datetime)
    gain = float(rng.normal(1.0, 0.02))
    for b, (key, res) in enumerate(BANDS_RES_M.items()):
        yield key, _band(land, masks, b, res, table, gain, acq.offset_dn), res
    yield "SCL", scl(land, masks), 20.0
