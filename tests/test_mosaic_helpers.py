"""Helpers for the mosaic tests: configs with adapters of our own, and seeded prediction stores
written by hand following the pred/<adapter>.zarr contract (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from scipy.ndimage import gaussian_filter, zoom

from nyceo.boundaries import load_boroughs
from nyceo import versioned
from nyceo.config import PipelineConfig, load_config
from nyceo.grid import AreaGrid, Lattice, build_grid
from nyceo.paths import pred_store
from tests.conftest import write_config

LULC = {"classes": ["water", "developed", "forest", "herbaceous", "other"],
        "colors": ["#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#a6a6a6"]}
BUILDINGS = {"classes": ["background", "building"], "colors": ["#f0f0f0", "#d95f02"]}


def adapter_cfg(spec: dict) -> dict:
    files = ("adapter_config.json", "adapter_model.safetensors", "decoder_head.safetensors")
    return {"source": "tests/none", "backbone": "terramind_v1_tiny", "classes": spec["classes"],
            "colors": spec["colors"], "norm_means": {"DEM": [0.0]}, "norm_stds": {"DEM": [1.0]},
            "sha256": {f: f"{i}" * 64 for i, f in enumerate(files)}}  # pinned: the pred key chain holds


def make_config(tmp_path: Path, boroughs: list[str], **mosaic) -> PipelineConfig:
    """demo.yaml with two adapters of our own, the given boroughs and mosaic settings."""
    mosaic = {"blocksize_px": 256, "quicklook_max_px": 512,
              "probability_classes": {"buildings_nyc": "building"}, **mosaic}
    path = write_config(tmp_path, grid={"boroughs": boroughs},
                        infer={"adapters": {"lulc_nyc": adapter_cfg(LULC), "buildings_nyc": adapter_cfg(BUILDINGS)}},
                        mosaic=mosaic)
    return load_config(path)


def area_grid(config: PipelineConfig) -> AreaGrid:
    chips = build_grid(config.grid, load_boroughs(config.grid.crs))
    return AreaGrid.from_chips(chips, Lattice.from_config(config.grid))


def seeded_prediction(n_classes: int, shape: tuple[int, int], seed: int) -> tuple[np.ndarray, ...]:
    """Smooth random class logits -> (class_map, probability u8 (class, y, x), confidence)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n_classes, shape[0] // 16 + 1, shape[1] // 16 + 1)).astype(np.float32)
    logits = np.stack([zoom(gaussian_filter(c, 1.0), 16, order=1)[: shape[0], : shape[1]] for c in coarse]) * 4
    p = np.exp(logits - logits.max(axis=0))
    p /= p.sum(axis=0)
    prob = np.rint(p * 254).astype(np.uint8)
    return p.argmax(axis=0).astype(np.uint8), prob, prob.max(axis=0)


def write_pred_store(config: PipelineConfig, month: str, adapter: str, seed: int = 0,
                     provenance_extra: dict | None = None, blank_chip: bool = True) -> str:
    """A prediction store over the config's AreaGrid; the top-left chip is left unwritten (255)."""
    grid = area_grid(config)
    classes = config.infer.adapters[adapter].classes
    cls, prob, conf = seeded_prediction(len(classes), (grid.height_px, grid.width_px), seed)
    if blank_chip:
        ys, xs = grid.chip_slices(grid.row0, grid.col0)
        cls[ys, xs], prob[:, ys, xs], conf[ys, xs] = 255, 255, 255
    y, x = grid.coords()
    ds = xr.Dataset(
        {"class_map": (("y", "x"), cls), "probability": (("class", "y", "x"), prob),
         "confidence": (("y", "x"), conf)},
        coords={"y": y, "x": x, "class": np.array(list(classes), dtype=object)},
    ).rio.write_crs(config.grid.crs)
    prov = {"stage": "infer", "adapter": {"name": adapter, "source": "tests/none", "revision": "abc123",
                                          "sha256": {"adapter_model.safetensors": "0" * 64}},
            "backbone": "terramind_v1_tiny", "config_hash": config.config_hash(),
            "stack": {"scenes": {"s2": ["S2A_MSIL2A_20240704_T18TWL"], "s1": ["S1A_IW_GRDH_20240706"]}},
            **(provenance_extra or {})}
    ds.attrs["provenance"] = json.dumps(prov)
    chunks = {"class_map": (224, 224), "probability": (1, 224, 224), "confidence": (224, 224)}
    enc = {k: {"chunks": c, "_FillValue": 255} for k, c in chunks.items()}
    # another provenance_extra = another infer run's inputs: a new stack key, so a new pred key
    key = publish_stack_pointer(config, month, adapter, json.dumps(provenance_extra or {}, sort_keys=True))
    final = pred_store(config, month, adapter)
    path = versioned.version_path(final, key)
    ds.attrs["inputs_key"] = key
    ds.to_zarr(path, mode="w", zarr_format=3, encoding=enc, consolidated=False)
    versioned.publish(final, key, build=path)
    return final


def publish_stack_pointer(config: PipelineConfig, month: str, adapter: str, variant: str = "") -> str:
    """Publish (pointer only: the mosaic never reads the stack) a stack for ``month`` as the acquire
    stage would, so the infer stage's key chain holds; return the pred key the config asks for."""
    from nyceo.acquire.stage import locate
    from nyceo.infer.contract import expected_pred_key

    b = locate(config, month)
    key = f"synthetic-stack-{month}-{variant}"
    if versioned.read_pointer(b.final) != {"key": key, "version": b.path.rsplit("/", 1)[-1], "fingerprint": b.key}:
        versioned.publish(b.final, key, build=b.path, extra={"fingerprint": b.key})
    return expected_pred_key(config, month, adapter)


def read_store(path: str) -> xr.Dataset:
    return xr.open_zarr(path, mask_and_scale=False, consolidated=False).load()


def mosaic_manhattan(tmp_path: Path, month: str, adapter: str = "buildings_nyc", seed: int = 3):
    """A seeded prediction of ``adapter`` mosaicked over Manhattan: (config, result, {role: COG path})."""
    from nyceo.mosaic import layout
    from nyceo.mosaic.stage import mosaic_area

    cfg = make_config(tmp_path, ["Manhattan"])
    write_pred_store(cfg, month, adapter, seed=seed)
    first = mosaic_area(cfg, month, adapter, "manhattan")
    return cfg, first, {k: Path(layout.out_path(cfg, rel)) for k, rel in first.files.items()}
