"""Reading the month's stack store and writing per-adapter prediction stores (Zarr v3).

Contracts: docs/ARCHITECTURE.md, "stack.zarr" and "pred/<adapter>.zarr". Reads and writes are
chunk-aligned region accesses through zarr; the prediction store's metadata and coordinates are
laid out by xarray (so ``xr.open_zarr`` reads it back) and its uint8 layers use 255 as fill value,
so chips never written read as nodata. Finished blocks are recorded by one small JSON marker per
block beside the store (``<adapter>.zarr.done/<block_id>.json``, written atomically after the
block's chunks), carrying the store's inputs key: a store or marker made from other inputs is
never mixed into a new run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from nyceo.grid import AreaGrid, Lattice
from nyceo.io import is_remote, write_json_atomic

log = logging.getLogger("nyceo.infer")

NODATA_U8 = 255
S2_NODATA = -32768
STACK_VARS = ("s2", "s1", "dem", "s2_valid", "s1_valid")
LAYERS = ("class_map", "probability", "confidence")


class StackStoreError(ValueError):
    """The stack store is missing, incomplete or not on the chip lattice."""


def _attr_json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return json.loads(value)
    return dict(value or {})


@dataclass(frozen=True)
class StackBlock:
    """Stack arrays over one box of area pixels, axis order (time, band, y, x)."""

    s2: np.ndarray  # int16 [T, C2, h, w], -32768 nodata
    s2_valid: np.ndarray  # uint8 [T, h, w]
    s1: np.ndarray  # float32 [T, C1, h, w], NaN nodata
    s1_valid: np.ndarray  # uint8 [T, h, w]
    dem: np.ndarray  # float32 [h, w]


class StackStore:
    """A month's stack.zarr opened for windowed reads."""

    def __init__(self, path: str, lattice: Lattice) -> None:
        self.path = path
        try:
            self.group = zarr.open_group(path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError):
            raise StackStoreError(
                f"stack store {path} not found; run `nyceo acquire --month MONTH -c CONFIG` first"
            ) from None
        missing = [v for v in (*STACK_VARS, "x", "y") if v not in self.group]
        if missing:
            raise StackStoreError(
                f"stack store {path} lacks {missing}; it is incomplete or not a stack.zarr "
                "(see docs/ARCHITECTURE.md) - re-run acquisition for this month"
            )
        self.area = _area_from_coords(path, self.group["y"][:], self.group["x"][:], lattice)
        self.provenance = _attr_json(self.group.attrs.get("provenance"))
        if not self.provenance:
            raise StackStoreError(
                f"stack store {path} has no provenance: its acquisition is unfinished or the month was "
                "skipped; run `nyceo acquire --month MONTH -c CONFIG` to completion first"
            )
        self.n_time = int(self.group["s2"].shape[0])

    def read(self, box: tuple[int, int, int, int]) -> StackBlock:
        """Read every variable over area pixels ``[y0, y1) x [x0, x1)``; a chunk that cannot be
        decoded raises :class:`StackChunkError` naming the store, array, chunk and chip."""
        y0, y1, x0, x1 = box
        ys, xs = slice(y0, y1), slice(x0, x1)
        return StackBlock(
            s2=self._read("s2", (slice(None), slice(None), ys, xs), np.int16),
            s2_valid=self._read("s2_valid", (slice(None), ys, xs), np.uint8),
            s1=self._read("s1", (slice(None), slice(None), ys, xs), np.float32),
            s1_valid=self._read("s1_valid", (slice(None), ys, xs), np.uint8),
            dem=self._read("dem", (ys, xs), np.float32),
        )

    def _read(self, name: str, sel: tuple[slice, ...], dtype: Any) -> np.ndarray:
        try:
            return np.asarray(self.group[name][sel], dtype=dtype)
        except Exception as exc:  # zarr raises codec-specific errors (blosc, zstd, shape) for bad bytes
            raise self._locate_bad_chunk(name, sel, exc) from exc

    def _locate_bad_chunk(self, name: str, sel: tuple[slice, ...], exc: Exception) -> "StackChunkError":
        size = self.area.lattice.chip_size_px
        ys, xs = sel[-2], sel[-1]
        arr = self.group[name]
        for r in range(ys.start // size, -(-ys.stop // size)):
            for c in range(xs.start // size, -(-xs.stop // size)):
                try:
                    arr[(*sel[:-2], slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size))]
                except Exception:  # noqa: BLE001 - this is the chunk we are looking for
                    return StackChunkError(self.path, name, r, c, self.area, exc)
        return StackChunkError(self.path, name, -1, -1, self.area, exc)


class StackChunkError(StackStoreError):
    """A chunk of the stack store cannot be decoded (damaged file)."""

    def __init__(self, path: str, array: str, row: int, col: int, area: AreaGrid, exc: Exception) -> None:
        from nyceo.grid import chip_id

        self.path, self.array = path, array
        self.chip_id = chip_id(area.row0 + row, area.col0 + col) if row >= 0 else None
        where = f"chunk {array}/c/.../{row}/{col} (chip {self.chip_id})" if row >= 0 else f"array {array}"
        super().__init__(f"stack store {path}: {where} cannot be decoded ({type(exc).__name__}: {exc}); "
                         "the file is damaged")


def _area_from_coords(path: str, y: np.ndarray, x: np.ndarray, lattice: Lattice) -> AreaGrid:
    """The AreaGrid whose pixel centres are ``y`` (descending) and ``x``; error if off-lattice."""
    res, size = lattice.resolution_m, lattice.chip_size_px
    col_f = (float(x[0]) - res / 2 - lattice.origin_x_m) / lattice.chip_m
    row_f = (lattice.origin_y_m - (float(y[0]) + res / 2)) / lattice.chip_m
    ok = (
        abs(col_f - round(col_f)) < 1e-6 and abs(row_f - round(row_f)) < 1e-6
        and len(x) % size == 0 and len(y) % size == 0 and len(x) > 0 and len(y) > 0
        and np.allclose(np.diff(x), res) and np.allclose(np.diff(y), -res)
    )
    if not ok:
        raise StackStoreError(
            f"stack store {path} is not on the chip lattice (x starts {float(x[0])}, y starts {float(y[0])}, "
            f"{len(y)}x{len(x)} px; expected pixel centres of {size} px chips of {res:g} m from the "
            "lattice origin); it was written with another grid configuration - re-run acquisition"
        )
    return AreaGrid(int(round(row_f)), int(round(col_f)), len(y) // size, len(x) // size, lattice)


def marker_dir(pred_path: str) -> str:
    return f"{pred_path.rstrip('/')}.done"


def _marker(pred_path: str, block_id: str) -> str:
    return f"{marker_dir(pred_path)}/{block_id}.json"


def block_done(pred_path: str, block_id: str, key: str) -> bool:
    """Whether ``block_id`` was finished by a run with the same inputs key."""
    import fsspec

    try:
        with fsspec.open(_marker(pred_path, block_id), "r") as f:
            return json.load(f).get("inputs_key") == key
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def mark_block_done(pred_path: str, block_id: str, key: str, n_windows: int, chunks: dict[str, int]) -> None:
    """Record a finished block with the chunk files it wrote (``nyceo.chunks.manifest``)."""
    write_json_atomic(_marker(pred_path, block_id), {"block_id": block_id, "inputs_key": key,
                                                     "n_windows": n_windows, "chunks": chunks})


def block_markers(pred_path: str) -> dict[str, dict[str, Any]]:
    """Every finished-block record of a prediction store build, by block id."""
    import fsspec

    fs, p = fsspec.core.url_to_fs(marker_dir(pred_path))
    if not fs.exists(p):
        return {}
    out = {}
    for f in fs.ls(p, detail=False):
        name = f.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith("."):
            with fs.open(f, "r") as fh:
                out[name[:-5]] = json.load(fh)
    return out


def remove_marker(pred_path: str, block_id: str) -> None:
    import fsspec

    fs, p = fsspec.core.url_to_fs(_marker(pred_path, block_id))
    if fs.exists(p):
        fs.rm(p)


def _remove_tree(path: str) -> None:
    if is_remote(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path)
        if fs.exists(p):
            fs.rm(p, recursive=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _template(area: AreaGrid, classes: list[str], crs: str) -> Any:  # xarray.Dataset (lazy import)
    import dask.array as da
    import rioxarray  # noqa: F401  (registers .rio)
    import xarray as xr

    size = area.lattice.chip_size_px
    h, w, k = area.height_px, area.width_px, len(classes)
    y, x = area.coords()
    ds = xr.Dataset(
        {
            "class_map": (("y", "x"), da.zeros((h, w), dtype="uint8", chunks=size)),
            "probability": (("class", "y", "x"), da.zeros((k, h, w), dtype="uint8", chunks=(k, size, size))),
            "confidence": (("y", "x"), da.zeros((h, w), dtype="uint8", chunks=size)),
        },
        coords={"y": y, "x": x, "class": np.array(classes, dtype=object)},
    )
    ds = ds.rio.write_crs(crs)
    ds = ds.rio.write_transform(area.transform)
    for v in LAYERS:
        ds[v].attrs.update({"nodata": NODATA_U8, "_nyceo_layer": v})
    ds["probability"].attrs["scale"] = "p * 254, rounded"
    return ds


def create_pred_store(
    path: str, area: AreaGrid, classes: list[str], provenance: dict[str, Any], key: str, crs: str
) -> None:
    """Write the empty store (metadata, coordinates, provenance); atomic rename when local."""
    ds = _template(area, classes, crs)
    ds.attrs["inputs_key"] = key
    enc = {v: {**ds[v].encoding, "fill_value": NODATA_U8, "chunks": ds[v].data.chunksize} for v in LAYERS}
    target = path if is_remote(path) else f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    ds.to_zarr(target, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=enc)
    zarr.open_group(target, mode="r+").attrs["provenance"] = provenance
    if target != path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(target, path)
        except OSError:  # another process created it first
            shutil.rmtree(target, ignore_errors=True)


def open_pred_store(
    path: str, area: AreaGrid, classes: list[str], provenance: dict[str, Any], key: str, crs: str
) -> zarr.Group:
    """Open the prediction store for writing; create it, or rebuild it if made from other inputs."""
    try:
        group = zarr.open_group(path, mode="r+")
        existing = group.attrs.get("inputs_key")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        group, existing = None, None
    if group is not None and existing != key:
        log.warning(
            "prediction store %s was made from other inputs (stack, adapter or infer config changed); "
            "rebuilding it", path,
        )
        _remove_tree(path)
        _remove_tree(marker_dir(path))
        group = None
    if group is None:
        create_pred_store(path, area, classes, provenance, key, crs)
        group = zarr.open_group(path, mode="r+")
    shape = group["class_map"].shape
    if shape != (area.height_px, area.width_px) or group["probability"].shape[0] != len(classes):
        raise ValueError(
            f"prediction store {path} has shape {shape} and {group['probability'].shape[0]} classes, "
            f"expected {(area.height_px, area.width_px)} and {len(classes)}; delete it and re-run"
        )
    return group


def write_layers(group: zarr.Group, box: tuple[int, int, int, int], layers: dict[str, np.ndarray]) -> None:
    """Chunk-aligned region write of the quantized layers over area pixels ``box``."""
    y0, y1, x0, x1 = box
    group["class_map"][y0:y1, x0:x1] = layers["class_map"]
    group["confidence"][y0:y1, x0:x1] = layers["confidence"]
    group["probability"][:, y0:y1, x0:x1] = layers["probability"]
