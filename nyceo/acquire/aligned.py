"""Fast path for assets already on the grid: same CRS, north-up, pixels nesting into the grid's.

Sentinel-2 bands (10/20/60 m) and Sentinel-1 RTC on Planetary Computer's MGRS/UTM grids share the
lattice's CRS and pixel edges, so warping them through GDAL is wasted work: this module reads the
native window (plus the resampling margin) with one rasterio windowed read and resamples it in
numpy the way GDAL's warper does for these cases:

* bilinear, target pixels equal or finer (upsampling): the 4 source pixel centres around the target
  centre, weighted by distance; neighbours that are invalid (nodata, NaN or outside the raster) are
  dropped and the remaining weights renormalized (no valid weight -> nodata); integer outputs are
  rounded half up and clamped to the dtype.
* nearest, finer or coarser by a whole factor: the source pixel containing the target centre (a
  centre on a pixel edge takes the pixel to its right / below, like GDAL).
* target pixels whose centre falls outside the raster, or in an invalid source pixel, are nodata.

Anything else (another CRS, rotation, pixels that do not nest, bilinear downsampling, which GDAL
does with a wider kernel, an internal mask or alpha band) returns ``None`` and the caller uses the
general stackstac/GDAL path.
Results equal GDAL's bit for bit where the weights are binary fractions (10 -> 10 m, 20 -> 10 m,
nearest); for 60 -> 10 m (weights in twelfths) a value exactly half-way between two integers may
round the other way (1 DN, about 1 % of B01/B09 pixels): GDAL's own choice there depends on the
floating-point rounding of its source coordinates, which vary with the distance to the origin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import MaskFlags, Resampling
from rasterio.windows import Window

if TYPE_CHECKING:
    from nyceo.acquire.load import GridSpec

EPS = 1e-9


@dataclass(frozen=True)
class AxisPlan:
    """Along one axis: for each target pixel, the source index (window-relative) and weights."""

    start: int            # first source pixel of the window (may be < 0 or past the raster)
    stop: int             # one past the last source pixel
    i0: np.ndarray        # window-relative source index (nearest: the pixel; bilinear: left one)
    frac: np.ndarray      # bilinear weight of i0 + 1 (nearest: unused, zeros)
    centre: np.ndarray    # window-relative source pixel containing the target centre
    outside: np.ndarray   # bool: target centre outside the raster -> nodata


def _ratio(a: float, b: float) -> int | None:
    """a / b when it is (numerically) a positive whole number, else None."""
    q = a / b
    r = round(q)
    return r if r >= 1 and abs(q - r) < EPS * max(1.0, q) else None


def _whole(v: float) -> int | None:
    r = round(v)
    return r if abs(v - r) < 1e-6 else None


def plan_axis(offset_dst_px: float, n_dst: int, res_dst: float, res_src: float, n_src: int,
              resampling: Resampling) -> AxisPlan | None:
    """``offset_dst_px``: grid start minus raster start, in target pixels (along the axis's direction)."""
    off = _whole(offset_dst_px)
    if off is None:
        return None
    j = np.arange(n_dst, dtype=np.int64) + off
    up = _ratio(res_src, res_dst)
    if up is not None:                      # target finer or equal: centre at (j + 0.5) / up
        centre = (2 * j + 1) // (2 * up)    # never on an edge (odd / even)
        if resampling == Resampling.nearest:
            idx, frac = centre, np.zeros(n_dst)
        elif resampling == Resampling.bilinear:
            num = 2 * j + 1 - up            # t = u - 0.5 = num / (2 up)
            idx, frac = num // (2 * up), (num % (2 * up)) / (2.0 * up)
        else:
            return None
    else:
        down = _ratio(res_dst, res_src)
        if down is None or resampling != Resampling.nearest:
            return None
        centre = idx = (2 * j * down + down) // 2   # on an edge when down is even: right/below pixel
        frac = np.zeros(n_dst)
    start = int(idx.min())
    stop = int(idx.max()) + (2 if resampling == Resampling.bilinear else 1)
    return AxisPlan(start, stop, idx - start, frac, centre - start, (centre < 0) | (centre >= n_src))


def _read_padded(src: rasterio.io.DatasetReader, ys: AxisPlan, xs: AxisPlan) -> tuple[np.ndarray, np.ndarray]:
    """The source window (possibly past the raster's edges) and its validity mask."""
    h, w = ys.stop - ys.start, xs.stop - xs.start
    r0, r1 = max(ys.start, 0), min(ys.stop, src.height)
    c0, c1 = max(xs.start, 0), min(xs.stop, src.width)
    data = np.zeros((h, w), dtype=src.dtypes[0])
    valid = np.zeros((h, w), dtype=bool)
    if r1 > r0 and c1 > c0:
        part = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
        sl = (slice(r0 - ys.start, r1 - ys.start), slice(c0 - xs.start, c1 - xs.start))
        data[sl] = part
        ok = np.ones(part.shape, dtype=bool)
        if src.nodata is not None:
            ok = part != src.nodata if not np.isnan(src.nodata) else ok
        if part.dtype.kind == "f":
            ok &= np.isfinite(part)
        valid[sl] = ok
    return data, valid


def _take(ys: AxisPlan, xs: AxisPlan) -> tuple:
    """Index selecting ``i0`` on both axes: plain slices when they are consecutive (no gather)."""
    def one(p: AxisPlan) -> slice | np.ndarray:
        n = len(p.i0)
        return slice(int(p.i0[0]), int(p.i0[0]) + n) if n and np.array_equal(np.diff(p.i0), np.ones(n - 1)) else p.i0
    y, x = one(ys), one(xs)
    return (y, x) if isinstance(y, slice) or isinstance(x, slice) else np.ix_(y, x)


def _work_dtype(data: np.ndarray, ys: AxisPlan, xs: AxisPlan) -> type:
    """float32 when it is exact: 16-bit values and weights in sixteenths (10/20 m grids), else float64."""
    sixteenths = all(np.array_equal(p.frac * 16, np.round(p.frac * 16)) for p in (ys, xs))
    return np.float32 if sixteenths and data.dtype.itemsize <= 2 and data.dtype.kind in "iu" else np.float64


def _interp(v: np.ndarray, ys: AxisPlan, xs: AxisPlan, work: type) -> np.ndarray:
    """Separable bilinear weighting of ``v`` (x first, on the coarse rows)."""
    wx0, wx1 = (1.0 - xs.frac).astype(work), xs.frac.astype(work)
    along_x = v[:, xs.i0] * wx0
    along_x += v[:, xs.i0 + 1] * wx1
    out = along_x[ys.i0]
    out *= (1.0 - ys.frac).astype(work)[:, None]
    out += along_x[ys.i0 + 1] * ys.frac.astype(work)[:, None]
    return out


def _bilinear(data: np.ndarray, valid: np.ndarray, ys: AxisPlan, xs: AxisPlan, dtype: np.dtype
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalized bilinear on the target grid as ``dtype`` and its validity (None: all valid).

    A pixel whose 4 neighbours are all valid gets the same arithmetic whatever the rest of the
    window holds (no division by a weight sum of 1), so results do not depend on the block layout."""
    if not (ys.frac.any() or xs.frac.any()):    # target centres on source centres: a copy
        sel = _take(ys, xs)
        return data[sel].astype(dtype, copy=False), None if valid.all() else valid[sel]
    work = _work_dtype(data, ys, xs)
    if valid.all():
        return _cast(_interp(data.astype(work), ys, xs, work), dtype), None
    num = _interp(np.where(valid, data, 0).astype(work), ys, xs, work)
    den = _interp(valid.astype(work), ys, xs, work)
    ok = den >= 1e-5
    np.divide(num, den, out=num, where=ok & (np.abs(den - 1) > 1e-6))
    return _cast(num, dtype), ok


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """GDAL's conversion: integers rounded half up and clamped, floats cast (in place: ours).

    ``values`` are convex combinations of ``dtype`` values: for unsigned types they are in range
    and non-negative, so +0.5 then truncation is the rounding (two passes fewer)."""
    if dtype.kind in "iu" and values.dtype.kind == "f":
        values += 0.5
        if dtype.kind == "i":
            info = np.iinfo(dtype)
            np.floor(values, out=values)
            np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype)


def read_aligned(src: rasterio.io.DatasetReader, spec: "GridSpec", resampling: Resampling,
                 dtype: np.dtype, fill: np.generic) -> np.ndarray | None:
    """``src`` band 1 on ``spec``'s grid, or None when the fast path does not apply."""
    if src.crs is None or src.crs.to_epsg() != spec.epsg or src.count < 1:
        return None
    flags = src.mask_flag_enums[0]
    if MaskFlags.per_dataset in flags or MaskFlags.alpha in flags:   # GDAL would honour that mask
        return None
    t = src.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0 or abs(t.a + t.e) > EPS * t.a:
        return None
    minx, _, _, maxy = spec.bounds
    h, w = spec.shape
    res = spec.resolution_m
    xs = plan_axis((minx - t.c) / res, w, res, t.a, src.width, resampling)
    ys = plan_axis((t.f - maxy) / res, h, res, -t.e, src.height, resampling)
    if xs is None or ys is None:
        return None
    data, valid = _read_padded(src, ys, xs)
    if resampling == Resampling.nearest:
        out, ok = data[_take(ys, xs)].astype(dtype, copy=False), None
    else:
        out, ok = _bilinear(data, valid, ys, xs, dtype)
    if ok is not None or not valid.all():   # GDAL skips a target whose centre pixel is invalid
        centre_ok = valid[np.ix_(ys.centre, xs.centre)]
        ok = centre_ok if ok is None else ok & centre_ok
    if ys.outside.any() or xs.outside.any():
        outside = ys.outside[:, None] | xs.outside[None, :]
        ok = ~outside if ok is None else ok & ~outside
    if ok is not None:
        out[~ok] = fill
    return out
