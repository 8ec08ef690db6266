"""Inference windows on the global lattice.

Windows are ``window_px`` squares whose top-left corners sit at multiples of the stride
(``round(window_px * (1 - overlap))``) in *global* pixel coordinates (pixel 0 = the lattice origin),
so a window's position names the same ground whatever area or block is processed, like a chip ID.
Along each axis the windows that lie fully inside the area are kept; where the area's first or
last pixel is not reached by a lattice position, one window snapped to that edge is added, so every
pixel of the area up to its edges is covered by at least one window. With the default 224 px chips
and overlap 0 or 0.5 the stride divides the chip size and no snapping is ever needed (areas are
chip-aligned).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nyceo.grid import AreaGrid


def stride_px(window_px: int, overlap_fraction: float) -> int:
    """Distance between consecutive window origins, at least one pixel."""
    if not 0.0 <= overlap_fraction < 1.0:
        raise ValueError(f"infer.overlap_fraction={overlap_fraction} must be in [0, 1); 0.5 = stride of half a window")
    return max(1, int(round(window_px * (1.0 - overlap_fraction))))


def axis_starts(start_px: int, length_px: int, window_px: int, stride: int) -> np.ndarray:
    """Global window origins along one axis covering ``[start_px, start_px + length_px)``.

    Lattice positions ``k * stride`` that keep the window inside the span, plus the span's two
    edge positions when the lattice misses them. Sorted, unique, int64.
    """
    if length_px < window_px:
        raise ValueError(
            f"area of {length_px} px is smaller than one {window_px} px window; grid at least one chip"
        )
    last = start_px + length_px - window_px
    first_on_lattice = math.ceil(start_px / stride) * stride
    starts = set(range(first_on_lattice, last + 1, stride))
    starts.update((start_px, last))
    return np.array(sorted(starts), dtype=np.int64)


@dataclass(frozen=True)
class Window:
    """One inference window; ``gy``/``gx`` are global pixel coordinates of its top-left pixel."""

    gy: int
    gx: int
    size_px: int

    @property
    def window_id(self) -> str:
        return f"w{self.gy:06d}_{self.gx:06d}"


@dataclass(frozen=True)
class WindowPlan:
    """All windows over an area, and the area's origin in global pixels."""

    area_gy0: int
    area_gx0: int
    height_px: int
    width_px: int
    window_px: int
    y_starts: np.ndarray
    x_starts: np.ndarray

    @classmethod
    def for_area(cls, area: AreaGrid, overlap_fraction: float) -> "WindowPlan":
        size = area.lattice.chip_size_px
        step = stride_px(size, overlap_fraction)
        gy0, gx0 = area.row0 * size, area.col0 * size
        return cls(
            gy0, gx0, area.height_px, area.width_px, size,
            axis_starts(gy0, area.height_px, size, step),
            axis_starts(gx0, area.width_px, size, step),
        )

    def windows_in(self, y0: int, y1: int, x0: int, x1: int) -> list[Window]:
        """Windows intersecting the area-pixel box ``[y0, y1) x [x0, x1)``, in global raster order."""
        w = self.window_px
        ys = self.y_starts - self.area_gy0
        xs = self.x_starts - self.area_gx0
        ys = ys[(ys < y1) & (ys + w > y0)]
        xs = xs[(xs < x1) & (xs + w > x0)]
        return [
            Window(int(y + self.area_gy0), int(x + self.area_gx0), w) for y in ys for x in xs
        ]

    def all_windows(self) -> list[Window]:
        return self.windows_in(0, self.height_px, 0, self.width_px)

    def local_origin(self, win: Window) -> tuple[int, int]:
        """(y, x) of a window's top-left pixel in area pixels."""
        return win.gy - self.area_gy0, win.gx - self.area_gx0
