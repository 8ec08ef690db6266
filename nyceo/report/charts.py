"""Matplotlib charts of the run report (Agg backend, PNG files, no network)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def _save(fig: plt.Figure, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return dest


def class_area_bars(table: pd.DataFrame, classes: list[str], colors: list[str], title: str, dest: Path) -> Path:
    """Stacked horizontal bars: km² of each class per borough (nodata in grey hatching)."""
    t = table.sort_values("zone_name")
    fig, ax = plt.subplots(figsize=(7.5, 0.6 * len(t) + 1.6))
    left = np.zeros(len(t))
    for cls, col in zip(classes, colors):
        vals = t[f"{cls}_km2"].to_numpy()
        ax.barh(t["zone_name"], vals, left=left, color=col, label=cls, edgecolor="white", linewidth=0.5)
        left += vals
    ax.barh(t["zone_name"], t["nodata_km2"].to_numpy(), left=left, color="#dddddd", hatch="//", label="no data")
    ax.set_xlabel("area (km²)")
    ax.set_title(title, fontsize=11)
    ax.legend(ncol=min(len(classes) + 1, 4), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18 - 0.02 * len(t)),
              frameon=False)
    ax.invert_yaxis()
    return _save(fig, dest)


def share_series(history: pd.DataFrame, title: str, dest: Path) -> Path:
    """Impervious and vegetation share per borough over months (one line per borough)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
    for ax, col, label in zip(axes, ("impervious_share", "vegetation_share"), ("developed (impervious)", "vegetation")):
        for name, g in history.sort_values("month").groupby("zone_name"):
            ax.plot(g["month"], 100 * g[col], marker="o", label=name)
        ax.set_title(f"{label} share (%)", fontsize=10)
        ax.tick_params(axis="x", rotation=45, labelsize=8)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    return _save(fig, dest)


def grid_map(values: np.ndarray, title: str, cmap: str, vmin: float, vmax: float, label: str, dest: Path) -> Path:
    """A 100 m feed grid as an image with a colour bar (NaN transparent)."""
    h, w = values.shape
    fig, ax = plt.subplots(figsize=(6, 6 * h / max(w, 1) + 0.6))
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)
    fig.colorbar(im, ax=ax, shrink=0.7, label=label)
    return _save(fig, dest)
