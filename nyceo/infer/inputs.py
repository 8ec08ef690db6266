"""Model inputs cut from a stack block: ``{modality: [B, C, T, H, W]}`` (DEM ``[B, 1, H, W]``).

Sentinel-2 int16 digital numbers become float32 DN, Sentinel-1 stays in dB, the DEM in metres; the
runner normalizes per adapter. Masked pixels (S2: flag 0 or -32768; S1: flag 0 or NaN; DEM: NaN)
are filled with the mean of the same band over the window's valid pixels of all timesteps, which
keeps the filled values inside the band's local range (a whole missing timestep becomes the
window's average scene). A band with no valid pixel in the window falls back to the configured
per-modality value (``infer.fill_fallback``, default TerraMind's pretraining means, i.e. zero
after normalization).
"""

from __future__ import annotations

import numpy as np

from nyceo.infer.store import S2_NODATA, StackBlock

S2_KEY, S1_KEY, DEM_KEY = "S2L2A", "S1RTC", "DEM"


def s2_window_mask(block: StackBlock, oy: int, ox: int, size: int) -> np.ndarray:
    """Valid S2 observations [T, C, s, s] of one window."""
    s2 = block.s2[:, :, oy : oy + size, ox : ox + size]
    flag = block.s2_valid[:, oy : oy + size, ox : ox + size] > 0
    return (s2 != S2_NODATA) & flag[:, None]


def window_has_data(block: StackBlock, oy: int, ox: int, size: int) -> bool:
    """Whether a window holds at least one valid Sentinel-2 pixel (flag > 0 at any timestep)."""
    return bool(block.s2_valid[:, oy : oy + size, ox : ox + size].any())


def pixels_with_s2(block: StackBlock) -> np.ndarray:
    """[h, w] True where some timestep has a valid S2 observation."""
    return (block.s2_valid > 0).any(axis=0)


def _fill_tcyx(values: np.ndarray, valid: np.ndarray, fallback: list[float], out: np.ndarray) -> None:
    """Write ``values`` [T, C, s, s] as ``out`` [C, T, s, s] float32, masked pixels = band mean."""
    np.copyto(out, np.swapaxes(values, 0, 1), casting="unsafe")
    if valid.all():
        return
    ok = np.swapaxes(valid, 0, 1)
    fb = np.asarray(fallback, dtype=np.float64)
    if fb.size != out.shape[0]:
        raise ValueError(f"infer.fill_fallback has {fb.size} values for {out.shape[0]} bands; give one per band")
    counts = ok.sum(axis=(1, 2, 3))
    sums = np.where(ok, out, np.float32(0)).sum(axis=(1, 2, 3), dtype=np.float64)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), fb).astype(np.float32)
    np.copyto(out, means[:, None, None, None], where=~ok)


def assemble_batch(
    block: StackBlock, origins: list[tuple[int, int]], size: int, fallback: dict[str, list[float]]
) -> dict[str, np.ndarray]:
    """Model inputs for the windows whose top-left pixels are ``origins`` (block-local (y, x))."""
    t, c2 = block.s2.shape[:2]
    c1 = block.s1.shape[1]
    b = len(origins)
    out = {
        S2_KEY: np.empty((b, c2, t, size, size), dtype=np.float32),
        S1_KEY: np.empty((b, c1, t, size, size), dtype=np.float32),
        DEM_KEY: np.empty((b, 1, size, size), dtype=np.float32),
    }
    for i, (oy, ox) in enumerate(origins):
        ys, xs = slice(oy, oy + size), slice(ox, ox + size)
        _fill_tcyx(block.s2[:, :, ys, xs], s2_window_mask(block, oy, ox, size), fallback[S2_KEY], out[S2_KEY][i])
        s1 = block.s1[:, :, ys, xs]
        s1_ok = np.isfinite(s1) & (block.s1_valid[:, ys, xs] > 0)[:, None]
        _fill_tcyx(s1, s1_ok, fallback[S1_KEY], out[S1_KEY][i])
        dem = block.dem[ys, xs][None, None]
        _fill_tcyx(dem, np.isfinite(dem), fallback[DEM_KEY], out[DEM_KEY][i][None])
    return out
