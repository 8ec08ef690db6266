"""Synthetic prediction months for the change tests: same ground, independent noise, planted change.

A month's prediction is softmax(base logits + noise) quantized like the infer stage (p*254 uint8,
255 nodata). Stores follow the pred/<adapter>.zarr contract (EPSG:32618, lattice coordinates) and
are published as versioned stores, as the infer stage does.
"""

from __future__ import annotations

import numpy as np
import zarr

from nyceo import paths, versioned
from nyceo.change.gate import MonthLayers
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.store import create_pred_store, write_layers
from nyceo.keys import digest

SHA = {"adapter_model.safetensors": "a" * 64, "decoder_head.safetensors": "b" * 64}


def base_logits(n_classes: int, shape: tuple[int, ...], seed: int, strength: float = 3.0) -> np.ndarray:
    """(K, *shape) logits: a blocky true class map (8 px blocks) with a margin of ``strength``."""
    rng = np.random.default_rng(seed)
    flat = int(np.prod(shape))
    if len(shape) == 2:
        blocks = rng.integers(0, n_classes, (shape[0] // 8 + 1, shape[1] // 8 + 1))
        truth = np.kron(blocks, np.ones((8, 8), int))[: shape[0], : shape[1]]
    else:
        truth = np.repeat(rng.integers(0, n_classes, flat // 8 + 1), 8)[:flat].reshape(shape)
    logits = rng.normal(0, 0.3, (n_classes, *shape))
    np.put_along_axis(logits, truth[None], strength, axis=0)
    return logits


def plant(logits: np.ndarray, where: np.ndarray, to_class: int, strength: float = 3.0) -> np.ndarray:
    """Logits with the pixels ``where`` turned into ``to_class``."""
    out = logits.copy()
    out[:, where] = 0.0
    out[to_class, where] = strength
    return out


def realize(logits: np.ndarray, seed: int, noise_sd: float = 1.0, nodata: np.ndarray | None = None) -> MonthLayers:
    """One month's quantized prediction: softmax(logits + N(0, noise_sd)) -> uint8 layers."""
    rng = np.random.default_rng(seed)
    z = logits + rng.normal(0, noise_sd, logits.shape)
    p = np.exp(z - z.max(axis=0))
    p /= p.sum(axis=0)
    prob = np.rint(p * 254).astype(np.uint8)
    cmap, conf = p.argmax(axis=0).astype(np.uint8), np.rint(p.max(axis=0) * 254).astype(np.uint8)
    if nodata is not None:
        cmap[nodata], conf[nodata], prob[:, nodata] = 255, 255, 255
    return MonthLayers(cmap, prob, conf)


def small_area(rows: int = 2, cols: int = 3) -> AreaGrid:
    """A few chips of midtown Manhattan on the lattice (EPSG:32618)."""
    lat = Lattice(0.0, 5_017_600.0, 224, 10.0)
    r, c = lat.chip_of_point(585_500.0, 4_512_500.0)
    return AreaGrid(r, c, rows, cols, lat)


def publish_store(config, month: str, adapter: str, area: AreaGrid, layers: MonthLayers,
                  sha: dict[str, str] | None = None, tag: str = "") -> tuple[str, str]:
    """Write ``layers`` as the published prediction store of ``adapter`` for ``month``: (path, key)."""
    sha = dict(sha or SHA)
    key = digest({"test": month, "adapter": adapter, "sha": sha, "tag": tag, "area": [area.row0, area.col0,
                                                                                      area.n_rows, area.n_cols]})
    final = paths.pred_store(config, month, adapter)
    build = versioned.version_path(final, key)
    classes = list(config.infer.adapters[adapter].classes)
    prov = {"stage": "infer", "month": month, "adapter": adapter, "model": {"adapter": adapter, "sha256": sha},
            "inputs_key": key}
    create_pred_store(build, area, classes, prov, key, config.grid.crs)
    g = zarr.open_group(build, mode="r+")
    write_layers(g, (0, area.height_px, 0, area.width_px),
                 {"class_map": layers.class_map, "probability": layers.probability, "confidence": layers.confidence})
    versioned.publish(final, key)
    return build, key
