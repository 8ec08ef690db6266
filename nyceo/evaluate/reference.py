"""Reference maps onto the chip grid: rasters (any CRS, resampled by mode), STAC assets, vectors.

Every loader returns a :class:`ReferenceOnGrid`: uint8 class indices on the pred store's
``AreaGrid`` (255 = reference nodata), in the order of the reference's *targets* (the distinct class
names of its remap, in remap order); :func:`to_adapter_classes` re-indexes them into one adapter's
class order. Codes are remapped at the reference's native resolution, then resampled by MODE
(``rasterio.warp.reproject``, ``Resampling.mode``), so a pixel takes the class most of its
source cells have. Vectors are rasterized with the pixel-centre rule (``all_touched=False``) and,
on request, as the fraction of each pixel covered (10 x 10 supersampling per chip).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds

from nyceo.config import PipelineConfig, ReferenceConfig
from nyceo.grid import AreaGrid
from nyceo.io import sha256_file

NODATA = 255
SUPERSAMPLE = 10


class EvaluateError(ValueError):
    """A reference cannot be evaluated against as configured (the message names what and the fix)."""


@dataclass
class ReferenceOnGrid:
    """A reference on the area grid, in target order (``targets[i]`` is class index ``i``)."""

    name: str
    targets: list[str]
    classes: np.ndarray  # uint8 (y, x), 255 nodata
    identity: dict[str, Any]
    fraction_classes: np.ndarray | None = None  # vector + fraction_threshold: the fraction-covered variant
    notes: dict[str, Any] = field(default_factory=dict)


def targets_of(ref: ReferenceConfig) -> list[str]:
    """The distinct remap targets in first-seen order (plus a vector's background class)."""
    extra = [ref.background_class] if ref.kind == "vector" and ref.background_class else []
    return list(dict.fromkeys([*ref.remap.values(), *extra]))


def check_adapter(name: str, ref: ReferenceConfig, adapter: str, classes: list[str]) -> None:
    """The remap must name exactly the adapter's classes (same count, every target a class)."""
    targets = targets_of(ref)
    unknown = [t for t in targets if t not in classes]
    if unknown or len(targets) != len(classes):
        raise EvaluateError(
            f"reference '{name}' remaps to {len(targets)} class(es) {targets} but adapter '{adapter}' has "
            f"{len(classes)} classes {classes}" + (f"; {unknown} are not among them" if unknown else "")
            + f". Fix evaluate.references.{name}.remap so its targets are exactly the adapter's classes"
        )
    if ref.kind == "vector" and ref.background_class and ref.background_class not in classes:
        raise EvaluateError(f"reference '{name}': background_class '{ref.background_class}' is not a class "
                              f"of adapter '{adapter}' {classes}")


def to_adapter_classes(ref_grid: ReferenceOnGrid, classes: list[str], which: str = "classes") -> np.ndarray:
    """Re-index a reference's target indices into ``classes`` order (255 stays 255)."""
    lut = np.full(256, NODATA, dtype=np.uint8)
    for i, t in enumerate(ref_grid.targets):
        lut[i] = classes.index(t)
    return lut[getattr(ref_grid, which)]


# ---- rasters --------------------------------------------------------------------------------------
def _remap_codes(name: str, source: str, ref: ReferenceConfig, codes: np.ndarray, valid: np.ndarray,
                 targets: list[str]) -> np.ndarray:
    """Native codes -> target indices (uint8, 255 nodata); an unmapped code is an error with its count."""
    uniq, inverse = np.unique(codes, return_inverse=True)
    inverse = inverse.reshape(codes.shape)
    lut = np.full(len(uniq), NODATA, dtype=np.uint8)
    missing: list[tuple[str, int]] = []
    counts = np.bincount(inverse[valid].ravel(), minlength=len(uniq))
    for i, code in enumerate(uniq):
        text = _code_text(code)
        if text in ref.remap:
            lut[i] = targets.index(ref.remap[text])
        elif text not in ref.nodata and counts[i] > 0:
            missing.append((text, int(counts[i])))
    if missing:
        listed = ", ".join(f"code {c} ({n} px)" for c, n in missing)
        raise EvaluateError(
            f"reference '{name}' ({source}) holds {listed} over the area that evaluate.references.{name}.remap "
            f"does not map; add '<code>: <class>' to the remap or list the code in nodata"
        )
    out = lut[inverse]
    out[~valid] = NODATA
    return out


def _code_text(code: Any) -> str:
    if isinstance(code, (float, np.floating)) and float(code).is_integer():
        return str(int(code))
    return str(code.item() if hasattr(code, "item") else code)


def _raster_onto(name: str, href: str, ref: ReferenceConfig, area: AreaGrid, crs: str, targets: list[str],
                 out: np.ndarray) -> bool:
    """Remap + mode-resample one raster onto ``out`` where ``out`` is still nodata; False: no overlap."""
    with rasterio.open(href) as src:
        if src.crs is None:
            raise EvaluateError(f"reference '{name}': raster {href} has no CRS; write one (gdal_edit.py -a_srs)")
        bounds = transform_bounds(CRS.from_user_input(crs), src.crs, *area.bounds, densify_pts=21)
        fw = from_bounds(*bounds, transform=src.transform)
        c0, r0 = math.floor(fw.col_off) - 1, math.floor(fw.row_off) - 1
        win = Window(c0, r0, math.ceil(fw.col_off + fw.width) + 1 - c0, math.ceil(fw.row_off + fw.height) + 1 - r0)
        full = Window(0, 0, src.width, src.height)
        try:
            win = win.intersection(full)
        except rasterio.errors.WindowError:
            return False
        if win.width <= 0 or win.height <= 0:
            return False
        codes = src.read(1, window=win)
        valid = np.ones(codes.shape, dtype=bool) if src.nodata is None else codes != src.nodata
        if np.issubdtype(codes.dtype, np.floating):
            valid &= np.isfinite(codes)
        classes = _remap_codes(name, href, ref, codes, valid, targets)
        dst = np.full(out.shape, NODATA, dtype=np.uint8)
        reproject(classes, dst, src_transform=src.window_transform(win), src_crs=src.crs, src_nodata=NODATA,
                  dst_transform=area.transform, dst_crs=crs, dst_nodata=NODATA, resampling=Resampling.mode)
    fill = (out == NODATA) & (dst != NODATA)
    out[fill] = dst[fill]
    return True


@functools.lru_cache(maxsize=32)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_identity(path: str) -> str:
    """sha256 of a local file (cached by size and mtime); a URL is named by itself."""
    if "://" in path and not path.startswith("file://"):
        return f"url:{path}"
    st = os.stat(path)
    return _file_sha256(os.path.abspath(path), st.st_size, st.st_mtime_ns)


def _no_overlap(name: str, source: str, area: AreaGrid, crs: str) -> EvaluateError:
    return EvaluateError(
        f"reference '{name}' ({source}) does not overlap the evaluated area {tuple(round(b) for b in area.bounds)} "
        f"({crs}); point evaluate.references.{name} at a reference that covers the gridded boroughs"
    )


def load_raster(name: str, ref: ReferenceConfig, area: AreaGrid, crs: str) -> ReferenceOnGrid:
    targets = targets_of(ref)
    out = np.full((area.height_px, area.width_px), NODATA, dtype=np.uint8)
    if not os.path.exists(ref.path) and "://" not in ref.path:
        raise EvaluateError(f"reference '{name}': raster {ref.path} does not exist; fix evaluate.references.{name}.path")
    if not _raster_onto(name, ref.path, ref, area, crs, targets, out) or (out == NODATA).all():
        raise _no_overlap(name, ref.path, area, crs)
    return ReferenceOnGrid(name, targets, out, {"kind": "raster", "sha256": file_identity(ref.path)})


# ---- STAC -----------------------------------------------------------------------------------------
def _stac_items(config: PipelineConfig, ref: ReferenceConfig, area: AreaGrid, crs: str) -> tuple[Any, list[Any]]:
    from catalogs import open_catalog

    cat_cfg = config.catalog if ref.stac_url is None else config.catalog.model_copy(
        update={"kind": "stac_api", "url": ref.stac_url})
    catalog = open_catalog(cat_cfg)
    bbox = transform_bounds(CRS.from_user_input(crs), "EPSG:4326", *area.bounds, densify_pts=21)
    start = dt.datetime.fromisoformat(ref.start).replace(tzinfo=dt.timezone.utc)
    end = dt.datetime.fromisoformat(ref.end).replace(tzinfo=dt.timezone.utc)
    items = sorted(catalog.search(ref.collection, tuple(bbox), start, end), key=lambda it: it.id)
    return catalog, items


def stac_identity(config: PipelineConfig, ref: ReferenceConfig, area: AreaGrid, crs: str) -> dict[str, Any]:
    """Collection, asset and the ids of the items over the area (searched once per process and
    catalog/reference/area: ``nyceo status`` asks for every month's key)."""
    ids = _stac_item_ids(config.catalog.model_dump_json(), ref.model_dump_json(), area, crs)
    return {"kind": "stac", "collection": ref.collection, "asset": ref.asset, "items": list(ids)}


@functools.lru_cache(maxsize=64)
def _stac_item_ids(catalog_json: str, ref_json: str, area: AreaGrid, crs: str) -> tuple[str, ...]:
    from nyceo.config import CatalogConfig

    config = PipelineConfig(catalog=CatalogConfig.model_validate_json(catalog_json))
    _, items = _stac_items(config, ReferenceConfig.model_validate_json(ref_json), area, crs)
    return tuple(it.id for it in items)


def load_stac(name: str, config: PipelineConfig, ref: ReferenceConfig, area: AreaGrid, crs: str) -> ReferenceOnGrid:
    catalog, items = _stac_items(config, ref, area, crs)
    source = f"STAC {ref.collection}/{ref.asset}"
    if not items:
        raise _no_overlap(name, f"{source}: no items from {ref.start} to {ref.end}", area, crs)
    targets = targets_of(ref)
    out = np.full((area.height_px, area.width_px), NODATA, dtype=np.uint8)
    for item in items:
        if ref.asset not in item.assets:
            raise EvaluateError(f"reference '{name}': item {item.id} of {ref.collection} has no asset "
                                  f"'{ref.asset}' (it has {sorted(item.assets)}); fix evaluate.references.{name}.asset")
        href = catalog.sign(item).assets[ref.asset].href
        _raster_onto(name, href, ref, area, crs, targets, out)
    if (out == NODATA).all():
        raise _no_overlap(name, source, area, crs)
    ident = {"kind": "stac", "collection": ref.collection, "asset": ref.asset, "items": [it.id for it in items]}
    return ReferenceOnGrid(name, targets, out, ident)


# ---- vectors --------------------------------------------------------------------------------------
def read_vector(name: str, ref: ReferenceConfig, crs: str) -> tuple[Any, dict[str, Any]]:
    """Features in the grid CRS with a ``_target`` column; invalid geometries repaired or refused."""
    import geopandas as gpd
    import shapely

    path = ref.path
    if not os.path.exists(path) and "://" not in path:
        raise EvaluateError(f"reference '{name}': vector file {path} does not exist; fix evaluate.references.{name}.path")
    gdf = gpd.read_parquet(path) if path.endswith((".parquet", ".geoparquet")) else gpd.read_file(path)
    if gdf.crs is None:
        raise EvaluateError(f"reference '{name}': vector file {path} has no CRS; set one (e.g. ogr2ogr -a_srs "
                              "EPSG:2263) - coordinates without a CRS cannot be placed on the grid")
    if ref.class_attribute not in gdf.columns:
        raise EvaluateError(f"reference '{name}': {path} has no attribute '{ref.class_attribute}' "
                              f"(it has {[c for c in gdf.columns if c != 'geometry']}); fix class_attribute")
    notes: dict[str, Any] = {"source_crs": gdf.crs.to_string()}
    ids = gdf[ref.id_attribute].astype(str) if ref.id_attribute else gdf.index.astype(str)
    bad = ~shapely.is_valid(gdf.geometry.values) & ~gdf.geometry.isna().values
    if bad.any():
        bad_ids = list(ids[bad])
        if ref.invalid_geometry == "refuse":
            raise EvaluateError(
                f"reference '{name}': {len(bad_ids)} invalid geometr{'y' if len(bad_ids) == 1 else 'ies'} in {path} "
                f"(features {bad_ids[:20]}); fix them, or set evaluate.references.{name}.invalid_geometry: repair")
        gdf.loc[bad, "geometry"] = [_polygonal(g) for g in shapely.make_valid(gdf.geometry.values[bad])]
        notes["repaired_features"] = len(bad_ids)
        notes["repaired_feature_ids"] = bad_ids[:1000]  # the first 1000 (all in the count)
    gdf = gdf.to_crs(crs)
    codes = gdf[ref.class_attribute].map(_code_text)
    keep = ~codes.isin(ref.nodata)
    unmapped = codes[keep & ~codes.isin(list(ref.remap))]
    if len(unmapped):
        counts = unmapped.value_counts()
        listed = ", ".join(f"code {c} ({n} features)" for c, n in counts.items())
        raise EvaluateError(f"reference '{name}' ({path}) holds {listed} that evaluate.references.{name}.remap "
                              "does not map; add '<code>: <class>' to the remap or list the code in nodata")
    gdf = gdf[keep].copy()
    targets = targets_of(ref)
    gdf["_target"] = [targets.index(ref.remap[c]) for c in codes[keep]]
    return gdf, notes


def _polygonal(geom: Any) -> Any:
    """The polygon parts of a repaired geometry (make_valid may add lines or points)."""
    import shapely

    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def _shapes(gdf: Any, value: int | None = None) -> list[tuple[Any, int]]:
    return [(g, int(v if value is None else value)) for g, v in zip(gdf.geometry.values, gdf["_target"]) if g is not None]


def _fraction_variant(gdf: Any, area: AreaGrid, targets: list[str], threshold: float, fill: int) -> np.ndarray:
    """Per pixel: the class whose features cover >= threshold of it (supersampled per chip), else ``fill``."""
    import shapely

    size, f = area.lattice.chip_size_px, SUPERSAMPLE
    out = np.full((area.height_px, area.width_px), fill, dtype=np.uint8)
    sindex = gdf.sindex
    for r in range(area.n_rows):
        for c in range(area.n_cols):
            row, col = area.row0 + r, area.col0 + c
            bounds = area.lattice.chip_bounds(row, col)
            sub = gdf.iloc[sindex.query(shapely.box(*bounds))]
            if sub.empty:
                continue
            tr = area.lattice.transform(row, col) @ rasterio.Affine.scale(1 / f)
            best = np.zeros((size, size), dtype=np.float32)
            for t in sorted(set(sub["_target"])):
                fine = rasterize(_shapes(sub[sub["_target"] == t], 1), out_shape=(size * f, size * f), transform=tr,
                                 fill=0, dtype="uint8")
                frac = fine.reshape(size, f, size, f).mean(axis=(1, 3), dtype=np.float32)
                ys, xs = area.chip_slices(row, col)
                win = (frac >= threshold) & (frac > best)
                out[ys, xs][win] = t
                best = np.maximum(best, frac)
    return out


def load_vector(name: str, ref: ReferenceConfig, area: AreaGrid, crs: str) -> ReferenceOnGrid:
    import shapely

    gdf, notes = read_vector(name, ref, crs)
    targets = targets_of(ref)
    if gdf.empty or not shapely.box(*gdf.total_bounds).intersects(shapely.box(*area.bounds)):
        raise _no_overlap(name, ref.path, area, crs)
    fill = targets.index(ref.background_class) if ref.background_class in targets else NODATA
    centre = rasterize(_shapes(gdf), out_shape=(area.height_px, area.width_px), transform=area.transform,
                       fill=fill, all_touched=False, dtype="uint8")
    frac = None
    if ref.fraction_threshold is not None:
        frac = _fraction_variant(gdf, area, targets, ref.fraction_threshold, fill)
    ident = {"kind": "vector", "sha256": file_identity(ref.path)}
    return ReferenceOnGrid(name, targets, centre, ident, frac, notes)


# ---- dispatch -------------------------------------------------------------------------------------
def load_reference(name: str, config: PipelineConfig, area: AreaGrid) -> ReferenceOnGrid:
    ref = config.evaluate.references[name]
    crs = config.grid.crs
    if ref.kind == "raster":
        return load_raster(name, ref, area, crs)
    if ref.kind == "stac":
        return load_stac(name, config, ref, area, crs)
    return load_vector(name, ref, area, crs)


def reference_identity(name: str, config: PipelineConfig, area: AreaGrid) -> dict[str, Any]:
    """What names the reference's content: file sha256, or collection + asset + item ids."""
    ref = config.evaluate.references[name]
    if ref.kind == "stac":
        return stac_identity(config, ref, area, config.grid.crs)
    return {"kind": ref.kind, "sha256": file_identity(ref.path)}
