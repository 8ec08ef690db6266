"""Read a prediction store (``pred/<adapter>.zarr``, contract in docs/ARCHITECTURE.md).

The arrays are read with zarr directly (no CF decoding: uint8 stays uint8 with 255 = nodata).
The georeference comes from the pixel-centre ``y``/``x`` coordinates and the ``spatial_ref``
variable, and is checked against the configured grid.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from nyceo.config import PipelineConfig

NODATA = 255
PROB_SCALE = 254


class PredStoreError(ValueError):
    """A prediction store is missing, incomplete or not on the configured grid."""


@dataclass(frozen=True)
class PredStore:
    """An opened prediction store: arrays, georeference, class names and provenance."""

    path: str
    group: Any
    transform: Affine
    crs: CRS
    height_px: int
    width_px: int
    classes: tuple[str, ...]
    provenance: dict[str, Any]

    def read(self, layer: str, window: Window, class_index: int | None = None) -> np.ndarray:
        """uint8 (y, x) pixels of ``class_map``, ``confidence`` or one class of ``probability``."""
        rows, cols = window.toslices()
        if layer == "probability":
            if class_index is None:
                raise ValueError("reading 'probability' needs class_index")
            return np.asarray(self.group["probability"][class_index, rows, cols], dtype=np.uint8)
        name = "class_map" if layer == "class" else layer
        return np.asarray(self.group[name][rows, cols], dtype=np.uint8)


def _crs_of(group: Any, path: str) -> CRS:
    if "spatial_ref" not in group:
        raise PredStoreError(
            f"prediction store {path} has no 'spatial_ref' variable; the infer stage must write the "
            "CRS as a CF grid mapping (rioxarray .rio.write_crs) — re-run infer for this month"
        )
    attrs = dict(group["spatial_ref"].attrs)
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    if not wkt:
        raise PredStoreError(f"prediction store {path}: 'spatial_ref' has no crs_wkt attribute")
    return CRS.from_wkt(wkt)


def _transform_of(group: Any, path: str) -> Affine:
    x = np.asarray(group["x"][:2], dtype=np.float64)
    y = np.asarray(group["y"][:2], dtype=np.float64)
    if x.size < 2 or y.size < 2:
        raise PredStoreError(f"prediction store {path} is smaller than 2 x 2 pixels")
    res_x, res_y = x[1] - x[0], y[1] - y[0]
    if res_y >= 0:
        raise PredStoreError(f"prediction store {path}: 'y' must descend (north up), got step {res_y}")
    return Affine(res_x, 0.0, x[0] - res_x / 2, 0.0, res_y, y[0] - res_y / 2)


def _check_grid(store: PredStore, config: PipelineConfig) -> None:
    want = CRS.from_user_input(config.grid.crs)
    if store.crs != want:
        raise PredStoreError(f"prediction store {store.path} is in {store.crs}, the grid in {want}; re-run infer")
    res = config.grid.resolution_m
    if not (np.isclose(store.transform.a, res) and np.isclose(-store.transform.e, res)):
        raise PredStoreError(
            f"prediction store {store.path} has {store.transform.a} m pixels, the grid {res} m; re-run infer"
        )


def open_pred_store(path: str, config: PipelineConfig, adapter: str,
                    storage_options: dict[str, Any] | None = None) -> PredStore:
    """Open and validate the prediction store of ``adapter`` against the config's class list."""
    try:
        group = zarr.open_group(path, mode="r", storage_options=storage_options or None)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise PredStoreError(
            f"prediction store {path} does not exist; run `nyceo infer` for this month and adapter '{adapter}' first"
        ) from exc
    missing = [v for v in ("class_map", "confidence", "probability", "x", "y", "class") if v not in group]
    if missing:
        raise PredStoreError(f"prediction store {path} lacks {missing}; it does not follow the pred contract")
    classes = tuple(str(c) for c in np.asarray(group["class"][:]).tolist())
    expected = tuple(config.infer.adapters[adapter].classes)
    if classes != expected:
        raise PredStoreError(
            f"prediction store {path} has classes {list(classes)} but infer.adapters.{adapter}.classes "
            f"is {list(expected)}; fix the config or re-run infer"
        )
    prov = group.attrs.get("provenance", {})
    prov = json.loads(prov) if isinstance(prov, str) else dict(prov)
    h, w = group["class_map"].shape
    store = PredStore(path, group, _transform_of(group, path), _crs_of(group, path), int(h), int(w), classes, prov)
    _check_grid(store, config)
    return store


def content_fingerprint(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """sha256 of the (name, size) of every file of the store and of its block markers (``.done``).

    The infer stage writes provenance when it creates a store and fills blocks afterwards (resumable),
    so provenance alone does not say which blocks a mosaic saw; the file listing does.
    """
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    entries: list[tuple[str, int]] = []
    for base in (root.rstrip("/"), root.rstrip("/") + ".done"):
        if fs.exists(base):
            found = fs.find(base, detail=True)
            entries += [(name[len(base):], int(info.get("size") or 0)) for name, info in found.items()]
    return hashlib.sha256(json.dumps(sorted(entries)).encode()).hexdigest()
