"""Writes the embedded city: COGs, STAC items and a static catalog per unit, atomically.

A *unit* is one folder with its own ``catalog.json``: ``static/`` (DEM tiles and truth rasters),
``YYYY-MM/sentinel-2-l2a/`` and ``YYYY-MM/sentinel-1-rtc/``. A unit is built in a temporary
folder beside its final place under an exclusive file lock; ``_COMPLETE.json`` (the unit's
fingerprint: generator version, seed, grid, options) is written last and the folder is renamed into
place. A unit whose marker is missing or has another fingerprint is rebuilt; a finished one is
reused (idempotent). Same seed and month give byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from shapely.geometry import Polygon, mapping

from catalogs.static import json_geometry, write_static_catalog

MARKER = "_COMPLETE.json"
GENERATOR_VERSION = 2


def write_cog(path: Path, array: np.ndarray, transform: Affine, crs: str, nodata: float | None,
              overviews: bool = True) -> Path:
    """One single-band COG (ZSTD level 1, predictor, tiled 512) at ``path``; returns ``path``.

    ``overviews=False`` skips the internal overviews (they cost ~3/4 of the write time and ~1/4 of
    the bytes of a noisy scene, and acquisition never reads them): used for the monthly scenes;
    the static DEM and truth rasters keep them for viewers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    predictor = 3 if array.dtype.kind == "f" else 2
    with rasterio.open(
        path, "w", driver="COG", width=array.shape[1], height=array.shape[0], count=1,
        dtype=array.dtype.name, crs=crs, transform=transform, nodata=nodata, compress="ZSTD",
        level=1, predictor=predictor, blocksize=512, overviews="AUTO" if overviews else "NONE", resampling="NEAREST",
        num_threads=2,
    ) as dst:
        dst.write(array, 1)
    return path


def utm_footprint_lonlat(corners_xy: list[tuple[float, float]], crs: str, step_m: float = 2000.0) -> dict[str, Any]:
    """A polygon given in ``crs`` as a GeoJSON geometry in EPSG:4326 (edges densified)."""
    poly = Polygon(corners_xy).segmentize(step_m)
    t = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    xs, ys = t.transform(*zip(*poly.exterior.coords))
    return json_geometry(mapping(Polygon(list(zip(xs, ys)))))


def read_marker(unit_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((unit_dir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def is_complete(unit_dir: Path, fingerprint: dict[str, Any]) -> bool:
    return read_marker(unit_dir) == fingerprint


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_unit(unit_dir: Path, fingerprint: dict[str, Any], build: Callable[[Path], list]) -> Path:
    """Build ``unit_dir`` with ``build(tmp_dir) -> items`` unless it is already complete.

    Returns the unit's ``catalog.json``. Safe against concurrent callers (file lock) and crashes
    (temporary folder, marker last, rename).
    """
    if is_complete(unit_dir, fingerprint):
        return unit_dir / "catalog.json"
    with _locked(unit_dir.parent / f".{unit_dir.name}.lock"):
        if is_complete(unit_dir, fingerprint):
            return unit_dir / "catalog.json"
        tmp = unit_dir.parent / f".{unit_dir.name}.tmp-{uuid.uuid4().hex}"
        try:
            items = build(tmp)
            write_static_catalog(items, tmp, f"embedded-{unit_dir.parent.name}-{unit_dir.name}",
                                 f"Embedded synthetic New York: {unit_dir.parent.name}/{unit_dir.name}")
            (tmp / MARKER).write_text(json.dumps(fingerprint, sort_keys=True))
            if unit_dir.exists():   # partial or stale: move aside, then delete
                trash = unit_dir.parent / f".{unit_dir.name}.stale-{uuid.uuid4().hex}"
                os.rename(unit_dir, trash)
                shutil.rmtree(trash, ignore_errors=True)
            os.rename(tmp, unit_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return unit_dir / "catalog.json"
