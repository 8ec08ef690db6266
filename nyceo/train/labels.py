"""Labels on the chip grid: a raster (file or STAC asset) read per chip with mode resampling, or a
vector layer rasterized per chip (``nyceo.train.vectors``), remapped.

``resolve_label_source`` turns ``train.adapters.<name>.labels.source`` into a local path and an
identity for cache keys (catalog identity + item/asset for ``stac:``, file sha256 for a raster,
file sha256 + attribute for a vector layer). ``chip_label_reader`` reads either kind per chip.
``read_chip_labels`` warps the raster onto one chip (224 x 224 px of the lattice, EPSG of the grid)
with ``Resampling.mode`` — the majority class of the source pixels under each grid pixel — and
``remap_labels`` turns label codes into class indices (``ignore_codes`` and the raster's nodata
become ``ignore_index``); a code the remap does not name is an error, never a silent class.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nyceo.config import PipelineConfig, TrainAdapterConfig
from nyceo.grid import Lattice
from nyceo.io import sha256_file
from nyceo.train.errors import TrainError

STAC_PREFIX = "stac:"
ChipReader = Callable[[int, int], tuple[np.ndarray, "int | None"]]


@dataclass(frozen=True)
class LabelSource:
    """A resolved label raster or vector layer (``kind``)."""

    path: Path
    identity: dict[str, Any]
    kind: str = "raster"


def resolve_label_source(config: PipelineConfig, adapter: str, tcfg: TrainAdapterConfig) -> LabelSource:
    """Local path of the label raster / vector layer and its identity (what names its content)."""
    from nyceo.train.vectors import is_vector, vector_identity

    src = tcfg.labels.source
    if not src.startswith(STAC_PREFIX):
        path = Path(src.replace("{output_root}", config.run.output_root))
        what = "label layer" if is_vector(path) else "label raster"
        if not path.is_file():
            raise TrainError(f"train.adapters.{adapter}.labels.source: {what} {path} does not exist; "
                             "give a GeoTIFF or vector layer path, or stac:<collection>/<asset>")
        if is_vector(path):
            if not tcfg.labels.attribute:
                raise TrainError(f"train.adapters.{adapter}.labels: the vector label source {path} needs "
                                 "labels.attribute (the attribute holding each feature's label code), e.g. "
                                 "`attribute: class_code`")
            return LabelSource(path, vector_identity(path, tcfg.labels.attribute), "vector")
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


def chip_label_reader(source: LabelSource, adapter: str, tcfg: TrainAdapterConfig, lattice: Lattice, crs: str,
                      chips: list[tuple[int, int]], areas: dict[str, Any]) -> tuple[ChipReader, str]:
    """A reader of label codes per chip (row, col) -> (codes, nodata), and the source's name for messages.
    A vector layer is read once and checked first: it overlaps ``chips``, its codes there are remapped."""
    if source.kind != "vector":
        return (lambda r, c: read_chip_labels(source.path, lattice, crs, r, c)), f"label raster {source.path}"
    from nyceo.train.vectors import check_codes, chip_codes, features_over, read_vector_labels

    name = f"label layer {source.path}"
    gdf = read_vector_labels(source.path, tcfg.labels.attribute, tcfg.labels.id_attribute, crs,
                             f"train.adapters.{adapter}.labels.source")
    near = features_over(gdf, [lattice.chip_bounds(*rc) for rc in chips])
    if near.empty:
        bounds = tuple(round(float(b)) for b in gdf.total_bounds) if not gdf.empty else "none"
        raise TrainError(
            f"{len(gdf)} feature(s) of the {name} of train.adapters.{adapter} (bounds {bounds} in {crs}) do not "
            f"overlap the stacks of {sorted(areas)} (areas {areas}, {len(chips)} chips with data). Use a label "
            "layer covering the grid, or the months/chips it covers"
        )
    check_codes(near, tcfg.labels.remap, tcfg.labels.ignore_codes, f"{name} (attribute '{tcfg.labels.attribute}')")
    return (lambda r, c: chip_codes(near, lattice, r, c)), name


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
