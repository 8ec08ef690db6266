"""Helpers for the zonal and report tests: a small area on the lattice, seeded prediction stores
published the way the infer stage publishes them, and a seeded stack store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from nyceo import versioned
from nyceo.config import PipelineConfig, load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.store import create_pred_store, write_layers
from nyceo.infer.testing import write_stack_store
from nyceo.paths import pred_store, stack_store
from tests.conftest import write_config
from tests.test_mosaic_helpers import BUILDINGS, LULC, adapter_cfg, seeded_prediction

MONTH = "2024-07"
# 3 x 3 chips (6.7 km square) over the Manhattan / Bronx / Queens meeting point (Randalls Island,
# Harlem, Astoria): three boroughs, water, and dozens of NTAs on a 672 x 672 px grid.
ROW0, COL0, N = 222, 262, 3


def small_area(config: PipelineConfig) -> AreaGrid:
    return AreaGrid(ROW0, COL0, N, N, Lattice.from_config(config.grid))


def make_config(tmp_path: Path, **zonal) -> PipelineConfig:
    path = write_config(tmp_path, infer={"adapters": {"lulc_nyc": adapter_cfg(LULC), "buildings_nyc": adapter_cfg(BUILDINGS)}},
                        zonal=zonal)
    return load_config(path)


def publish_pred(config: PipelineConfig, month: str, adapter: str, class_map: np.ndarray | None = None,
                 prob: np.ndarray | None = None, seed: int = 0, key: str | None = None) -> str:
    """A complete prediction store of ``adapter`` on :func:`small_area`, published (pointer + link)."""
    area = small_area(config)
    classes = list(config.infer.adapters[adapter].classes)
    if class_map is None:
        class_map, prob, _ = seeded_prediction(len(classes), (area.height_px, area.width_px), seed)
    if prob is None:
        prob = np.stack([np.where(class_map == k, 254, 0) for k in range(len(classes))]).astype(np.uint8)
        prob[:, class_map == 255] = 255
    key = key or f"{seed:02d}{adapter}".ljust(64, "0")[:64].encode().hex()[:64]
    final = pred_store(config, month, adapter)
    path = versioned.version_path(final, key)
    prov = {"stage": "infer", "adapter": adapter, "model": {"sha256": {"adapter_model.safetensors": "ab" * 32}}}
    create_pred_store(path, area, classes, prov, key, config.grid.crs)
    conf = np.where(class_map == 255, 255, prob.max(axis=0)).astype(np.uint8)
    write_layers(zarr.open_group(path, mode="r+"), (0, area.height_px, 0, area.width_px),
                 {"class_map": class_map, "probability": prob, "confidence": conf})
    versioned.publish(final, key)
    return path


def publish_stack(config: PipelineConfig, month: str, seed: int = 3) -> str:
    return write_stack_store(stack_store(config, month), small_area(config), seed)
