"""Synthetic Sentinel-2 L2A scenes of the embedded city, shaped like Planetary Computer's.

Per scene: assets B01…B12 (no B10) at native resolution (10 m B02/B03/B04/B08; 20 m B05/B06/B07/
B8A/B11/B12 and SCL; 60 m B01/B09), uint16 digital numbers, nodata 0. Surface reflectance follows
land cover and season (vegetation greens up toward July), clouds are bright with SCL 8/9, cirrus
SCL 10, shadows SCL 3 (darkened), and scenes from 2022-01-25 on carry BOA_ADD_OFFSET = +1000
(processing baseline 05.10). Every third acquisition comes from the neighbouring orbit whose
swath edge cuts the city (nodata 0, SCL 0 beyond it).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from catalogs.embedded.landscape import CityGrid, Landscape, smooth_noise

BANDS_RES_M: dict[str, float] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
    "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}
OFFSET_START = dt.datetime(2022, 1, 25, tzinfo=dt.timezone.utc)
BOA_ADD_OFFSET = 1000
ANCHOR = dt.datetime(2017, 1, 2, 15, 49, 21, tzinfo=dt.timezone.utc)
REVISIT_DAYS = 5
SCL_CLEAR = {0: 6, 1: 5, 2: 4, 3: 4, 4: 5}   # land-cover class -> SCL (6 water, 4 veg, 5 not veg)
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
TEXTURE_AMP = np.array([0.01, 0.06, 0.05, 0.05, 0.06, 0.06], np.float32)


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
    def platform(self) -> str:
        return "Sentinel-2A" if self.cycle % 2 == 0 else "Sentinel-2B"

    @property
    def relative_orbit(self) -> int:
        return 54 if self.partial else 11

    @property
    def item_id(self) -> str:
        stamp = self.datetime.strftime("%Y%m%dT%H%M%S")
        proc = (self.datetime + dt.timedelta(hours=6)).strftime("%Y%m%dT%H%M%S")
        return f"S2{self.platform[-1]}_MSIL2A_{stamp}_R{self.relative_orbit:03d}_T18TWL_{proc}"


def s2_acquisitions(year: int, month: int) -> list[S2Acquisition]:
    """The acquisitions of one month: a 5-day revisit; every third from the edge orbit."""
    start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.timezone.utc)
    k = int(np.ceil((start - ANCHOR) / dt.timedelta(days=REVISIT_DAYS)))
    out = []
    while (t := ANCHOR + dt.timedelta(days=REVISIT_DAYS * k)) < end:
        if t >= start:
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


def _sub(arr: np.ndarray, f: int) -> np.ndarray:
    return arr if f == 1 else arr[f // 2 :: f, f // 2 :: f]


def _up2(arr: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)


@dataclass
class S2Masks:
    """Per-scene fields at 20 m: cloud opacity, cirrus, shadow, valid footprint."""

    alpha: np.ndarray
    cirrus: np.ndarray
    shadow: np.ndarray
    valid: np.ndarray
    edge_cols_10m: tuple[float, float] | None   # swath edge column at the top and bottom rows


def scene_masks(grid: CityGrid, acq: S2Acquisition, rng: np.random.Generator, all_cloud: bool) -> S2Masks:
    h, w = grid.shape(20)
    valid = np.ones((h, w), bool)
    edge = None
    if acq.partial:
        slope = np.tan(np.deg2rad(12.0))
        top = w * rng.uniform(0.35, 0.6)
        cut = top - slope * np.arange(h)
        valid = np.arange(w)[None, :] >= cut[:, None]
        edge = (2 * top, 2 * (top - slope * h))
    u = rng.random()
    frac = rng.uniform(0, 0.05) if u < 0.35 else rng.uniform(0.05, 0.4) if u < 0.7 else rng.uniform(0.4, 0.95)
    field = smooth_noise(rng, (h, w), 20, 1920) + 0.5 * smooth_noise(rng, (h, w), 20, 480)
    thresh = np.quantile(field[::8, ::8], 1 - frac)
    alpha = np.clip((field - thresh) / 0.6, 0, 1).astype(np.float32)
    if all_cloud:
        alpha = np.maximum(alpha, 0.8)
    cirrus_field = smooth_noise(rng, (h, w), 20, 960)
    cirrus = (cirrus_field > (2.0 if rng.random() < 0.4 else 99)) & (alpha == 0)
    dy, dx = 15, 10   # shadows fall 300 m north-west... of the cloud at 20 m pixels
    shifted = np.zeros_like(alpha)
    shifted[: h - dy, dx:] = alpha[dy:, : w - dx]
    shadow = (shifted > 0.3) & (alpha == 0) & ~cirrus
    return S2Masks(alpha, cirrus, shadow & valid, valid, edge)


def scl(land: Landscape, masks: S2Masks) -> np.ndarray:
    """The scene classification layer (20 m, uint8)."""
    lut = np.array([SCL_CLEAR[c] for c in range(5)], np.uint8)
    out = lut[_sub(land.landcover, 2)]
    out[masks.shadow] = 3
    out[masks.cirrus] = 10
    out[masks.alpha > 0] = 8
    out[masks.alpha >= 0.5] = 9
    out[~masks.valid] = 0
    return out


def cloud_cover_pct(scl_arr: np.ndarray) -> float:
    """eo:cloud_cover as the share of SCL 8/9/10 among pixels with data."""
    valid = scl_arr != 0
    n = int(valid.sum())
    return 0.0 if n == 0 else round(100.0 * float(np.isin(scl_arr[valid], (8, 9, 10)).mean()), 4)


def _band(land: Landscape, masks: S2Masks, b: int, res_m: float, table: np.ndarray,
          gain: float, offset_dn: int) -> np.ndarray:
    f = int(res_m // 10)
    lc = _sub(land.landcover, f).astype(np.intp)
    surface_class = np.where(_sub(land.building, f), 5, lc)
    refl = table[surface_class, b] * (1 + TEXTURE_AMP[surface_class] * _sub(land.texture, f)) * gain
    if f == 1:
        alpha, cirrus, shadow, valid = (_up2(m) for m in (masks.alpha, masks.cirrus, masks.shadow, masks.valid))
    else:
        s = f // 2
        alpha, cirrus, shadow, valid = (_sub(m, s) for m in (masks.alpha, masks.cirrus, masks.shadow, masks.valid))
    refl = np.where(shadow, refl * 0.4, refl)
    refl = np.where(cirrus, refl + (600 if b < 9 else 300), refl)
    refl = refl * (1 - alpha) + CLOUD[b] * alpha
    dn = np.clip(np.rint(refl) + offset_dn, 1, 65535).astype(np.uint16)
    dn[~valid] = 0
    return dn


def render_s2(land: Landscape, acq: S2Acquisition, masks: S2Masks,
              rng: np.random.Generator) -> Iterator[tuple[str, np.ndarray, float]]:
    """(asset key, uint16 array, resolution m) for every band of the scene, then SCL."""
    table = month_spectra(acq.datetime)
    gain = float(rng.normal(1.0, 0.02))
    for b, (key, res) in enumerate(BANDS_RES_M.items()):
        yield key, _band(land, masks, b, res, table, gain, acq.offset_dn), res
    yield "SCL", scl(land, masks), 20.0
