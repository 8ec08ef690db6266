"""Small configs, published prediction stores (real layout) and reference rasters for evaluate tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import yaml
from affine import Affine

from nyceo import paths, versioned
from nyceo.config import PipelineConfig, load_config
from nyceo.grid import AreaGrid, Lattice, parse_chip_id
from nyceo.infer.store import create_pred_store, write_layers
from tests.conftest import write_config

CHIPS = ["r0224_c0261", "r0224_c0262"]  # Manhattan, the west half of Central Park in the east chip
LULC = ["water", "developed", "forest", "herbaceous", "other"]


def make_config(tmp: Path, references: dict, **evaluate) -> PipelineConfig:
    path = write_config(tmp, grid={"boroughs": ["Manhattan"], "block_size_chips": 2},
                        acquire={"chip_ids": CHIPS}, evaluate={"references": references, "probes_file": None,
                                                               "sweep_classes": {}, **evaluate})
    return load_config(path)


def area_of(config: PipelineConfig, chips: list[str] = CHIPS) -> AreaGrid:
    lat = Lattice.from_config(config.grid)
    rc = [parse_chip_id(c) for c in chips]
    r0, c0 = min(r for r, _ in rc), min(c for _, c in rc)
    return AreaGrid(r0, c0, max(r for r, _ in rc) - r0 + 1, max(c for _, c in rc) - c0 + 1, lat)


def seeded_classes(area: AreaGrid, k: int, seed: int) -> np.ndarray:
    """Blocky class field (16 px blocks) so mode resampling and chips see clean regions."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, k, (area.height_px // 16, area.width_px // 16)).astype(np.uint8)
    return np.kron(small, np.ones((16, 16), dtype=np.uint8))


def publish_pred(config: PipelineConfig, month: str, adapter: str, class_map: np.ndarray,
                 prob: np.ndarray | None = None, key: str = "ab" * 32, area: AreaGrid | None = None) -> str:
    """A published prediction store of ``adapter`` (versioned folder + pointer), as infer leaves it."""
    area = area or area_of(config)
    classes = list(config.infer.adapters[adapter].classes)
    if prob is None:
        prob = np.stack([(class_map == i) * 254 for i in range(len(classes))]).astype(np.uint8)
        prob[:, class_map == 255] = 255
    conf = np.where(class_map == 255, 255, prob.max(axis=0)).astype(np.uint8)
    final = paths.pred_store(config, month, adapter)
    build = versioned.version_path(final, key)
    prov = {"stage": "infer", "adapter": adapter, "model": {"sha256": {"adapter_model.safetensors": "0" * 64}}}
    create_pred_store(build, area, classes, prov, key, config.grid.crs)
    import zarr

    write_layers(zarr.open_group(build, mode="r+"), (0, area.height_px, 0, area.width_px),
                 {"class_map": class_map, "probability": prob, "confidence": conf})
    versioned.publish(final, key)
    return final


def write_raster(path: Path, data: np.ndarray, transform: Affine, crs: str, nodata: float | None = None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def write_probes(path: Path, probes: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"probes": probes}))
    return path
