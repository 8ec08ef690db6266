"""Vector label sources: features with an integer class attribute, rasterized on the chip grid.

The rules are the evaluate stage's for vector references (``nyceo.evaluate.reference``): any CRS
(features are reprojected to the grid CRS), invalid geometries repaired with ``make_valid`` (their
polygon parts kept), rasterized with the pixel-centre rule (``all_touched=False``). Each chip
(224 x 224 px of the lattice) gets the features' *codes* burnt in (later features win where they
overlap); pixels no feature covers are nodata. The codes are then remapped exactly like a raster's
(``nyceo.train.labels.remap_labels``); before that, a code that neither ``labels.remap`` nor
``labels.ignore_codes`` names is an error listing the code and the features that carry it.
Identity (training key): the file's sha256 (a Shapefile's with its sidecar files) + the attribute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nyceo.grid import Lattice
from nyceo.keys import digest
from nyceo.train.errors import TrainError

VECTOR_SUFFIXES = (".gpkg", ".parquet", ".geoparquet", ".shp", ".geojson", ".json", ".fgb")
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
NODATA_CODE = int(np.iinfo(np.int32).min)  # pixels no feature covers


def is_vector(path: Path) -> bool:
    return path.suffix.lower() in VECTOR_SUFFIXES


def vector_identity(path: Path, attribute: str) -> dict[str, Any]:
    """File sha256 (a Shapefile: digest of its parts' sha256) + the class attribute."""
    from nyceo.evaluate.reference import file_identity

    if path.suffix.lower() == ".shp":
        parts = {p.suffix.lower(): file_identity(str(p)) for p in sorted(path.parent.glob(path.stem + ".*"))
                 if p.suffix.lower() in SHAPEFILE_PARTS}
        return {"kind": "vector", "file_sha256": digest(parts), "attribute": attribute}
    return {"kind": "vector", "file_sha256": file_identity(str(path)), "attribute": attribute}


def _feature_ids(gdf: Any, id_attribute: str) -> Any:
    import pandas as pd

    return gdf[id_attribute].astype(str) if id_attribute else pd.Series(gdf.index.astype(str), index=gdf.index)


def _integer_codes(values: Any, ids: Any, where: str, attribute: str) -> np.ndarray:
    """The attribute's values as int64; a missing or non-integer value is an error naming the features."""
    import pandas as pd

    num = pd.to_numeric(values, errors="coerce")
    bad = num.isna() | (num % 1 != 0)
    if bad.any():
        listed = ", ".join(f"feature {i} ({v!r})" for i, v in list(zip(ids[bad], values[bad]))[:10])
        raise TrainError(f"{where}: attribute '{attribute}' is not an integer label code for {int(bad.sum())} "
                         f"feature(s): {listed}; labels.remap maps integer codes, so convert the attribute "
                         "(or drop those features)")
    return num.astype(np.int64).to_numpy()


def read_vector_labels(path: Path, attribute: str, id_attribute: str, crs: str, where: str) -> Any:
    """Features in ``crs`` with integer ``_code`` and ``_id`` columns (invalid geometries repaired)."""
    import geopandas as gpd
    import shapely

    from nyceo.evaluate.reference import _polygonal

    if not attribute:
        raise TrainError(f"{where}: a vector label source needs labels.attribute (the attribute holding each "
                         "feature's label code), e.g. `attribute: class_code`")
    gdf = gpd.read_parquet(path) if path.suffix.lower() in (".parquet", ".geoparquet") else gpd.read_file(path)
    if gdf.crs is None:
        raise TrainError(f"{where}: vector layer {path} has no CRS; set one (e.g. ogr2ogr -a_srs EPSG:4326) - "
                         "coordinates without a CRS cannot be placed on the chip grid")
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    if attribute not in gdf.columns:
        raise TrainError(f"{where}: vector layer {path} has no attribute '{attribute}' (it has {columns}); fix "
                         "labels.attribute")
    if id_attribute and id_attribute not in gdf.columns:
        raise TrainError(f"{where}: vector layer {path} has no attribute '{id_attribute}' (it has {columns}); fix "
                         "labels.id_attribute")
    ids = _feature_ids(gdf, id_attribute)
    gdf = gdf.assign(_id=ids.to_numpy(), _code=_integer_codes(gdf[attribute], ids, f"{where} ({path})", attribute))
    bad = ~shapely.is_valid(gdf.geometry.values) & ~gdf.geometry.isna().to_numpy()
    if bad.any():
        gdf.loc[bad, gdf.geometry.name] = [_polygonal(g) for g in shapely.make_valid(gdf.geometry.values[bad])]
    gdf = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty]
    return gdf.to_crs(crs)[["_id", "_code", gdf.geometry.name]]


def features_over(gdf: Any, boxes: list[tuple[float, float, float, float]]) -> Any:
    """The features that intersect any of ``boxes`` (grid CRS)."""
    import shapely

    if gdf.empty or not boxes:
        return gdf.iloc[:0]
    hits = gdf.sindex.query(shapely.box(*np.asarray(boxes).T), predicate="intersects")[1]
    return gdf.iloc[np.unique(hits)]


def check_codes(gdf: Any, remap: dict[int, int], ignore_codes: list[int], where: str) -> None:
    """Every feature's code is in the remap or ignored; else an error naming codes, features and the fix."""
    unknown = ~gdf["_code"].isin([*remap, *ignore_codes])
    if unknown.any():
        bad = gdf[unknown]
        listed = "; ".join(f"code {c}: feature(s) {list(bad['_id'][bad['_code'] == c])[:10]}"
                           for c in sorted(set(bad["_code"].tolist())))
        raise TrainError(f"{where}: label code(s) not in labels.remap {sorted(remap)} nor in labels.ignore_codes "
                         f"({listed}); map each code to a class index (or list it in ignore_codes)")


def chip_codes(gdf: Any, lattice: Lattice, row: int, col: int) -> tuple[np.ndarray, int]:
    """Label codes int64 [224, 224] of chip (row, col) (pixel-centre rule) and the nodata code."""
    from rasterio.features import rasterize

    size = lattice.chip_size_px
    sub = features_over(gdf, [lattice.chip_bounds(row, col)])
    if sub.empty:
        return np.full((size, size), NODATA_CODE, dtype=np.int64), NODATA_CODE
    shapes = list(zip(sub.geometry.values, sub["_code"].tolist()))
    codes = rasterize(shapes, out_shape=(size, size), transform=lattice.transform(row, col), fill=NODATA_CODE,
                      all_touched=False, dtype="int32")
    return codes.astype(np.int64), NODATA_CODE
