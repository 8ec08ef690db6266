"""Seeded stack stores that follow the stack.zarr contract, and stand-in predictors.

For tests and benchmarks of the infer engine (no acquisition, no torch). Stores are written with
xarray like a real stack: EPSG:32618 lattice coordinates, int16 S2 digital numbers with -32768
nodata, float32 S1 dB with NaN nodata, DEM in metres, uint8 validity flags, chip-sized chunks.
With ``encode_position=True`` the DEM holds each pixel's global column and S1 ``vv`` its global
row, so a stand-in model can compute outputs that are smooth functions of map position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nyceo.config import S2_BANDS
from nyceo.grid import AreaGrid
from nyceo.infer.inputs import DEM_KEY, S1_KEY, S2_KEY
from nyceo.infer.store import S2_NODATA, StackBlock


def _smooth(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """A smooth random field in [0, 1] (sum of a few random plane waves)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    out = np.zeros(shape, dtype=np.float32)
    for _ in range(4):
        ky, kx = rng.normal(size=2) / scale_px
        out += np.sin(ky * yy + kx * xx + rng.uniform(0, 6.3)).astype(np.float32)
    return (out - out.min()) / max(float(np.ptp(out)), 1e-6)


def stack_arrays(
    area: AreaGrid, seed: int, n_time: int = 4, valid: np.ndarray | None = None, encode_position: bool = False
) -> dict[str, np.ndarray]:
    """Seeded stack variables over ``area``; ``valid`` [h, w] marks pixels with data (default all)."""
    rng = np.random.default_rng(seed)
    h, w = area.height_px, area.width_px
    valid = np.ones((h, w), dtype=bool) if valid is None else valid
    base = _smooth(rng, (h, w), 150.0)
    s2 = np.empty((n_time, len(S2_BANDS), h, w), dtype=np.int16)
    for b in range(len(S2_BANDS)):
        level = 400 + 250 * b
        noise = 40 * rng.standard_normal((n_time, h, w), dtype=np.float32)
        s2[:, b] = np.clip(level + 2500 * base[None] + noise, 1, 12000).astype(np.int16)
    s2_valid = np.where(valid[None], 1, 0).astype(np.uint8).repeat(n_time, axis=0)
    s2_valid[1][(rng.random((h, w)) < 0.05) & valid] = 2  # some pixels filled from another timestep
    s2[:, :, ~valid] = S2_NODATA
    s1 = np.stack([-12 + 6 * base - 3, -19 + 5 * base], axis=0)[None].repeat(n_time, axis=0).astype(np.float32)
    s1 += 0.5 * rng.standard_normal(s1.shape, dtype=np.float32)
    dem = (120 * _smooth(rng, (h, w), 400.0)).astype(np.float32)
    if encode_position:
        gy0, gx0 = area.row0 * area.lattice.chip_size_px, area.col0 * area.lattice.chip_size_px
        dem = (gx0 + np.arange(w, dtype=np.float32))[None].repeat(h, axis=0)
        s1[:, 0] = (gy0 + np.arange(h, dtype=np.float32))[:, None]
    s1[:, :, ~valid] = np.nan
    s1_valid = s2_valid.copy().clip(0, 1)
    return {"s2": s2, "s2_valid": s2_valid, "s1": s1, "s1_valid": s1_valid, "dem": dem}


def stack_block(
    area: AreaGrid, seed: int, n_time: int = 4, valid: np.ndarray | None = None
) -> StackBlock:
    """The seeded stack variables over all of ``area`` as an in-memory block (no store)."""
    arr = stack_arrays(area, seed, n_time, valid)
    return StackBlock(s2=arr["s2"], s2_valid=arr["s2_valid"], s1=arr["s1"], s1_valid=arr["s1_valid"], dem=arr["dem"])


def write_stack_store(
    path: str, area: AreaGrid, seed: int, crs: str = "EPSG:32618", n_time: int = 4,
    valid: np.ndarray | None = None, encode_position: bool = False, provenance: dict[str, Any] | None = None,
) -> str:
    """Write a seeded stack.zarr over ``area`` at ``path``; return the path."""
    import rioxarray  # noqa: F401
    import xarray as xr

    arr = stack_arrays(area, seed, n_time, valid, encode_position)
    y, x = area.coords()
    tcyx, tyx = ("time", "band", "y", "x"), ("time", "y", "x")
    ds = xr.Dataset(
        {
            "s2": (tcyx, arr["s2"]), "s1": (("time", "band_s1", "y", "x"), arr["s1"]),
            "dem": (("y", "x"), arr["dem"]), "s2_valid": (tyx, arr["s2_valid"]), "s1_valid": (tyx, arr["s1_valid"]),
        },
        coords={
            "time": np.arange(n_time), "band": np.array(S2_BANDS, dtype=object),
            "band_s1": np.array(["vv", "vh"], dtype=object), "y": y, "x": x,
        },
    )
    ds = ds.rio.write_crs(crs).rio.write_transform(area.transform)
    size = area.lattice.chip_size_px
    enc = {v: {"chunks": (*ds[v].shape[:-2], size, size)} for v in ("s2", "s1", "dem", "s2_valid", "s1_valid")}
    enc["s2"]["fill_value"] = S2_NODATA
    ds.attrs["provenance"] = provenance or {"stage": "acquire", "seed": seed, "synthetic": True}
    ds.to_zarr(path, mode="w", zarr_format=3, consolidated=False, encoding=enc)
    return path


def write_published_stack(config: Any, month: str, area: AreaGrid, seed: int, **kw: Any) -> str:
    """A seeded stack written as this configuration's build of ``month`` and published (pointer +
    link), as the acquire stage would: the infer stage reads only published stacks."""
    from nyceo import versioned
    from nyceo.acquire.stage import locate
    from nyceo.keys import digest

    b = locate(config, month)
    write_stack_store(b.path, area, seed, crs=config.grid.crs, **kw)
    content_key = digest({"synthetic_stack": seed, "area": [area.row0, area.col0, area.n_rows, area.n_cols],
                          "kw": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in kw.items()}})
    versioned.publish(b.final, content_key, build=b.path, extra={"fingerprint": b.key})
    return b.final


class SmoothStandIn:
    """Stand-in model whose probabilities are smooth functions of map position.

    Needs a store written with ``encode_position=True``. ``window_bias`` adds, per window, a
    logit offset that depends on the window's own centre (like a real model's context effect):
    a naive tiling then shows a jump at every window border, a seamless blend does not.
    """

    def __init__(
        self, n_classes: int = 3, window_bias: float = 0.0, wavelength_px: float = 300.0,
        adapter_names: tuple[str, ...] = ("lulc", "buildings"),
    ) -> None:
        self.n_classes, self.window_bias, self.wavelength_px = n_classes, window_bias, wavelength_px
        self.adapter_names = list(adapter_names)
        self.calls = 0

    def classes(self, adapter: str) -> list[str]:
        return [f"c{k}" for k in range(self.n_classes)]

    def provenance(self, adapter: str) -> dict[str, Any]:
        return {"model": "SmoothStandIn", "adapter": adapter, "window_bias": self.window_bias}

    def logits(self, gy: np.ndarray, gx: np.ndarray, adapter: str) -> np.ndarray:
        """Per-class logits [K, ...] at global pixel coordinates."""
        phase = sum(map(ord, adapter)) % 7
        k = np.arange(self.n_classes, dtype=np.float64).reshape(-1, *([1] * gy.ndim))
        return 2.0 * np.sin(gx / self.wavelength_px + k * 1.3 + phase) + 1.5 * np.cos(gy / self.wavelength_px - k)

    def predict_proba(
        self, adapter: str, inputs: dict[str, np.ndarray], origins: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray:
        self.calls += 1
        gx = inputs[DEM_KEY][:, 0].astype(np.float64)  # [B, H, W]
        gy = inputs[S1_KEY][:, 0, 0].astype(np.float64)
        z = np.moveaxis(self.logits(gy, gx, adapter), 0, 1)  # [B, K, H, W]
        if self.window_bias:
            centre = gx.mean(axis=(1, 2)) * 0.37 + gy.mean(axis=(1, 2)) * 0.61
            k = np.arange(self.n_classes)
            z = z + self.window_bias * np.sin(centre[:, None] * 0.05 + k[None] * 2.1)[:, :, None, None]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class BandStandIn:
    """Cheap deterministic stand-in: softmax of fixed linear maps of the band means per pixel."""

    def __init__(self, n_classes: int = 5, seed: int = 0, adapter_names: tuple[str, ...] = ("lulc", "buildings")) -> None:
        rng = np.random.default_rng(seed)
        self.adapter_names = list(adapter_names)
        self.n_classes = n_classes
        self.w = rng.normal(size=(n_classes, 3)).astype(np.float32)
        self.calls = 0

    def classes(self, adapter: str) -> list[str]:
        return [f"c{k}" for k in range(self.n_classes)]

    def provenance(self, adapter: str) -> dict[str, Any]:
        return {"model": "BandStandIn", "adapter": adapter}

    def predict_proba(
        self, adapter: str, inputs: dict[str, np.ndarray], origins: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray:
        self.calls += 1
        f = np.stack(
            [inputs[S2_KEY].mean(axis=(1, 2)) / 3000.0, inputs[S1_KEY].mean(axis=(1, 2)) / 10.0,
             inputs[DEM_KEY][:, 0] / 100.0], axis=1,
        )  # [B, 3, H, W]
        z = np.einsum("kf,bfhw->bkhw", self.w, f)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
