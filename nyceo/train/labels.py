"""Labels on the chip grid: a raster (file or STAC asset) read per chip with mode resampling, remapped.

``resolve_label_source`` turns ``train.adapters.<name>.labels.source`` into a local raster path and
an identity for cache keys (catalog identity + item/asset for ``stac:``, file sha256 for a path).
``read_chip_labels`` warps the raster onto one chip (224 x 224 px of the lattice, EPSG of the grid)
with ``Resampling.mode`` — the majority class of the source pixels under each grid pixel — and
``remap_labels`` turns label codes into class indices (``ignore_codes`` and the raster's nodata
become ``ignore_index``); a code the remap does not name is an error, never a silent class.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nyceo.config import PipelineConfig, TrainAdapterConfig
from nyceo.grid import Lattice
from nyceo.io import sha256_file
from nyceo.train.errors import TrainError

STAC_PREFIX = "stac:"


@dataclass(frozen=True)
class LabelSource:
    """A resolved label raster."""

    path: Path
    identity: dict[str, Any]


def resolve_label_source(config: PipelineConfig, adapter: str, tcfg: TrainAdapterConfig) -> LabelSource:
    """Local path of the label raster and its identity (what names its content)."""
    src = tcfg.labels.source
    if not src.startswith(STAC_PREFIX):
        path = Path(src.replace("{output_root}", config.run.output_root))
        if not path.is_file():
            raise TrainError(f"train.adapters.{adapter}.labels.source: label raster {path} does not exist; "
                             "give a GeoTIFF path or stac:<collection>/<asset>")
        return LabelSource(path, {"file_sha256": sha256_file(path)})
    collection, _, asset = src[len(STAC_PREFIX):].partition("/")
    if not collection or not asset:
        raise TrainError(f"train.adapters.{adapter}.labels.source '{src}' is not stac:<collection>/<asset>, "
                         "e.g. stac:nyceo-embedded-truth/landcover")
    from catalogs import open_catalog
    from nyceo.keys import catalog_identity

    catalog = open_catalog(config.catalog)
    bbox = _grid_bbox_lonlat(config)
    items = catalog.search(collection, bbox, dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc),
                           dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc))
    items = [i for i in items if asset in i.assets]
    if not items:
        raise TrainError(f"train.adapters.{adapter}.labels.source '{src}': the catalog ({config.catalog.kind}) has "
                         f"no item of collection '{collection}' with asset '{asset}' over the grid; check the "
                         "collection and asset names")
    item = catalog.sign(sorted(items, key=lambda i: i.id)[0])
    href = item.assets[asset].href
    return LabelSource(Path(href), {"catalog": catalog_identity(config), "item": item.id, "asset": asset,
                                    "collection": collection})


def _grid_bbox_lonlat(config: PipelineConfig) -> tuple[float, float, float, float]:
    from nyceo.boundaries import load_boroughs

    return tuple(load_boroughs("EPSG:4326").total_bounds)  # type: ignore[return-value]


def read_chip_labels(path: Path, lattice: Lattice, crs: str, row: int, col: int) -> tuple[np.ndarray, int | None]:
    """Label codes of chip (row, col) on the grid [224, 224] (mode resampling) and the raster's nodata."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.vrt import WarpedVRT

    size = lattice.chip_size_px
    with rasterio.open(path) as ds, WarpedVRT(ds, crs=crs, transform=lattice.transform(row, col), width=size,
                                                height=size, resampling=Resampling.mode) as vrt:
        nodata = ds.nodata
        fill = int(nodata) if nodata is not None else None
        data = vrt.read(1, boundless=False, fill_value=fill) if fill is not None else vrt.read(1)
        valid = vrt.read_masks(1) > 0
    if fill is None:
        fill = -1
    data = data.astype(np.int64)
    data[~valid] = fill
    return data, fill


def remap_labels(codes: np.ndarray, remap: dict[int, int], ignore_codes: list[int], nodata: int | None,
                 ignore_index: int, where: str) -> np.ndarray:
    """Class indices int64 [H, W] from label codes; unknown codes are an error naming ``where``."""
    ignored = set(ignore_codes) | ({nodata} if nodata is not None else set())
    present = set(np.unique(codes).tolist())
    unknown = sorted(present - set(remap) - ignored)
    if unknown:
        raise TrainError(
            f"{where}: label code(s) {unknown} are not in labels.remap {sorted(remap)} nor in labels.ignore_codes; "
            "map each code to a class index (or list it in ignore_codes)"
        )
    out = np.full(codes.shape, ignore_index, dtype=np.int64)
    for code, cls in remap.items():
        out[codes == code] = cls
    return out


def check_remap(adapter: str, tcfg: TrainAdapterConfig, classes: list[str]) -> None:
    """The remap's class indices must cover exactly the adapter's classes (before any data is read)."""
    targets = sorted(set(tcfg.labels.remap.values()))
    n = len(classes)
    if targets != list(range(n)):
        raise TrainError(
            f"train.adapters.{adapter}.labels.remap maps to class indices {targets} but "
            f"infer.adapters.{adapter}.classes lists {n} classes {classes}; map the label codes onto 0..{n - 1} "
            "(one index per class, in channel order)"
        )
    if tcfg.class_weights is not None and len(tcfg.class_weights) != n:
        raise TrainError(f"train.adapters.{adapter}.class_weights has {len(tcfg.class_weights)} values for {n} "
                         f"classes {classes}; give one weight per class")
    if tcfg.ignore_index < n:
        raise TrainError(f"train.adapters.{adapter}.ignore_index {tcfg.ignore_index} is a class index (< {n}); "
                         "use a value outside the classes, e.g. 255")
