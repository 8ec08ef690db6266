"""Quicklook PNGs (legend + title) and small thumbnails of a class-map COG (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

DPI = 100
NODATA_RGBA = (1.0, 1.0, 1.0, 0.0)


def read_downsampled(cog: str | Path, max_px: int) -> np.ndarray:
    """Class map of a COG with its longest edge <= ``max_px`` (nearest, from the mode overviews)."""
    with rasterio.open(cog) as ds:
        k = max(1, math.ceil(max(ds.height, ds.width) / max_px))
        return ds.read(1, out_shape=(math.ceil(ds.height / k), math.ceil(ds.width / k)))


def _class_cmap(colors: list[str]) -> ListedColormap:
    return ListedColormap(colors).with_extremes(bad=NODATA_RGBA)


def _show(ax: plt.Axes, class_map: np.ndarray, colors: list[str], nodata: int) -> None:
    ax.imshow(np.ma.masked_equal(class_map, nodata), cmap=_class_cmap(colors), vmin=-0.5,
              vmax=len(colors) - 0.5, interpolation="nearest")
    ax.set_axis_off()


def render_quicklook(class_map: np.ndarray, classes: list[str], colors: list[str], title: str,
                     dest: str | Path, max_px: int, nodata: int = 255, caption: str = "") -> Path:
    """PNG with the map, a legend (class colours + no data) and a title; longest edge = ``max_px``."""
    h, w = class_map.shape
    legend_px, title_px = 0.28 * max_px, 0.09 * max_px
    s = min((max_px - legend_px) / w, (max_px - title_px) / h)
    fig_w, fig_h = s * w + legend_px, s * h + title_px
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    try:
        ax = fig.add_axes((0.0, 0.0, s * w / fig_w, s * h / fig_h))
        _show(ax, class_map, colors, nodata)
        font = max(6.0, max_px / 80)
        fig.suptitle(title, x=0.02, y=1 - 0.15 * title_px / fig_h, ha="left", va="top",
                     fontsize=font * 1.25, fontweight="bold")
        handles = [Patch(facecolor=c, edgecolor="0.3", label=n) for n, c in zip(classes, colors)]
        handles.append(Patch(facecolor="white", edgecolor="0.3", label="no data / outside"))
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(s * w / fig_w + 0.01, 0.5),
                   fontsize=font, frameon=False, title="class", title_fontsize=font)
        if caption:
            fig.text(0.99, 0.01, caption, ha="right", va="bottom", fontsize=font * 0.7, color="0.35")
        fig.savefig(dest, dpi=DPI, facecolor="white")
    finally:
        plt.close(fig)
    return Path(dest)


def render_thumbnail(class_map: np.ndarray, colors: list[str], dest: str | Path, max_px: int,
                     nodata: int = 255) -> Path:
    """Small RGBA PNG of the class map alone (transparent nodata), longest edge <= ``max_px``."""
    k = max(1, math.ceil(max(class_map.shape) / max_px))
    small = class_map[::k, ::k]
    lut = np.zeros((256, 4), dtype=np.uint8)
    for i, c in enumerate(colors):
        h = c.lstrip("#")
        lut[i] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    lut[nodata] = (0, 0, 0, 0)
    plt.imsave(dest, lut[small], format="png")
    return Path(dest)
