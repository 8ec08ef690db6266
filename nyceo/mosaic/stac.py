"""STAC catalog of the published mosaics (self-contained: relative hrefs, no self links).

``catalog.json`` at the output root links one collection per adapter
(``stac/<adapter>/collection.json``); each collection links one item per month x area
(``stac/<adapter>/<YYYY-MM>/<id>.json``) whose assets point at the COGs and PNGs with relative
hrefs. Items are built from the published files themselves (COG headers and provenance tags),
so updating the catalog for one month rewrites that month's items and re-lists every item
already on the store: other months are kept.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import posixpath
from typing import Any

import fsspec
import pystac
import rasterio
import shapely
from pyproj import Transformer
from pystac.extensions.classification import Classification, ClassificationExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from shapely.geometry import mapping

from nyceo import __version__
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, write_json_atomic
from nyceo.mosaic import layout
from nyceo.mosaic.clip import Area, configured_areas
from nyceo.mosaic.stage import area_slugs
from nyceo.mosaic.cog import PROVENANCE_TAG
from nyceo.mosaic.predstore import NODATA, PROB_SCALE
from nyceo.mosaic.provinfo import model_fields, scene_ids
from nyceo.mosaic.stage import output_rels

MEDIA = {"class": pystac.MediaType.COG, "confidence": pystac.MediaType.COG,
         "probability": pystac.MediaType.COG, "quicklook": pystac.MediaType.PNG,
         "thumbnail": pystac.MediaType.PNG, "categories": pystac.MediaType.XML}
ROLES = {"class": ["data"], "confidence": ["data"], "probability": ["data"], "quicklook": ["overview"],
         "thumbnail": ["thumbnail"], "categories": ["metadata"]}


def month_range(month: str) -> tuple[dt.datetime, dt.datetime]:
    """First and last second of a month, UTC."""
    y, m = (int(v) for v in month.split("-"))
    last = calendar.monthrange(y, m)[1]
    utc = dt.timezone.utc
    return dt.datetime(y, m, 1, tzinfo=utc), dt.datetime(y, m, last, 23, 59, 59, tzinfo=utc)


def _cog_header(path: str, storage_options: dict[str, Any]) -> tuple[list[int], list[float], dict]:
    """(shape, 6-term transform, provenance) of a published COG, local or remote (range reads)."""
    if is_remote(path):
        fs, p = fsspec.core.url_to_fs(path, **storage_options)
        ctx = rasterio.open(p, opener=fs)
    else:
        ctx = rasterio.open(path)
    with ctx as ds:
        return [ds.height, ds.width], list(ds.transform)[:6], json.loads(ds.tags().get(PROVENANCE_TAG, "{}"))


def _footprint(area: Area, crs: str) -> shapely.Geometry:
    to_wgs84 = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    geom = shapely.ops.transform(to_wgs84.transform, area.geometry)
    return shapely.simplify(geom, 0.001, preserve_topology=True)  # ~100 m: a footprint, not a boundary


def _asset_extensions(asset: pystac.Asset, role: str, config: PipelineConfig, adapter: str) -> None:
    if role == "class":
        acfg = config.infer.adapters[adapter]
        classes = [Classification.create(value=i, name=n, description=n, color_hint=c.lstrip("#").upper())
                   for i, (n, c) in enumerate(zip(acfg.classes, acfg.colors))]
        classes.append(Classification.create(value=NODATA, name="nodata", description="no data", nodata=True))
        ClassificationExtension.ext(asset, add_if_missing=True).classes = classes
    if role in ("class", "confidence", "probability"):
        scale = 1.0 if role == "class" else 1 / PROB_SCALE
        band = RasterBand.create(nodata=NODATA, data_type=DataType.UINT8, scale=scale, offset=0.0,
                                 spatial_resolution=config.grid.resolution_m)
        RasterExtension.ext(asset, add_if_missing=True).bands = [band]


def build_item(config: PipelineConfig, month: str, adapter: str, area: Area) -> pystac.Item:
    """The STAC item of one adapter x area x month, from the published files."""
    rels, so = output_rels(config, month, adapter, area.slug), layout.storage_options(config)
    shape, transform, prov = _cog_header(layout.out_path(config, rels["class"]), so)
    pred = prov.get("pred_provenance", {})
    start, end = month_range(month)
    geom = _footprint(area, config.grid.crs)
    props = {"nyceo:month": month, "nyceo:area": area.slug, "nyceo:area_name": area.name,
             "nyceo:adapter": adapter, "nyceo:source_scenes": scene_ids(pred),
             "nyceo:config_hash": prov.get("config_hash"), "nyceo:input_key": prov.get("input_key"),
             "nyceo:infer_config_hash": pred.get("config_hash"), "nyceo:software": f"nyceo {__version__}",
             **{f"nyceo:{k}": v for k, v in model_fields(pred).items()}}
    item = pystac.Item(id=layout.item_id(month, adapter, area.slug), geometry=mapping(geom),
                       bbox=list(geom.bounds), datetime=None, properties=props,
                       start_datetime=start, end_datetime=end, collection=adapter)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    proj.epsg, proj.shape, proj.transform = int(config.grid.crs.split(":")[1]), shape, transform
    item_dir = posixpath.dirname(layout.item_rel(month, adapter, area.slug))
    for role, rel in rels.items():
        asset = pystac.Asset(href=posixpath.relpath(rel, item_dir), media_type=MEDIA[role], roles=ROLES[role],
                             title=f"{adapter} {role}, {area.name} {month}")
        item.add_asset(role, asset)
        _asset_extensions(asset, role, config, adapter)
    return item


def _links(item_or_coll: dict[str, Any], rel_path: str, parent_rel: str) -> None:
    d = posixpath.dirname(rel_path)
    item_or_coll["links"] = [
        {"rel": "root", "href": posixpath.relpath(layout.CATALOG_REL, d), "type": pystac.MediaType.JSON},
        {"rel": "parent", "href": posixpath.relpath(parent_rel, d), "type": pystac.MediaType.JSON},
    ]


def _read_json(fs: fsspec.AbstractFileSystem, path: str) -> dict[str, Any]:
    return json.loads(fs.cat_file(path))


def _write_if_changed(dest: str, obj: dict[str, Any], so: dict[str, Any]) -> None:
    """Write ``obj`` atomically unless ``dest`` already holds exactly it (a re-run leaves the
    catalog's bytes and mtimes untouched)."""
    fs, p = fsspec.core.url_to_fs(dest, **so)
    try:
        if json.loads(fs.cat_file(p)) == json.loads(json.dumps(obj, default=str)):
            return
    except (FileNotFoundError, ValueError):
        pass
    write_json_atomic(dest, obj, so)


def write_collection(config: PipelineConfig, adapter: str) -> str:
    """Rewrite ``stac/<adapter>/collection.json`` listing every item JSON on the store."""
    so = layout.storage_options(config)
    fs, root = fsspec.core.url_to_fs(layout.output_root(config), **so)
    item_paths = sorted(fs.glob(posixpath.join(root, "stac", adapter, "*", "*.json")))
    items = [_read_json(fs, p) for p in item_paths]
    bboxes = [i["bbox"] for i in items] or [[-180.0, -90.0, 180.0, 90.0]]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    times = [(i["properties"]["start_datetime"], i["properties"]["end_datetime"]) for i in items]
    interval = [min(t[0] for t in times), max(t[1] for t in times)] if times else [None, None]
    acfg = config.infer.adapters[adapter]
    coll = pystac.Collection(
        id=adapter, description=f"Monthly {adapter} maps of New York City (TerraMind + LoRA adapter "
        f"{acfg.source}, backbone {acfg.backbone}): class map, confidence"
        + (", probability" if adapter in config.mosaic.probability_classes else "") + " COGs per borough and city.",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent(
            [[pystac.utils.str_to_datetime(t) if t else None for t in interval]])),
        license="other", title=f"nyceo {adapter}",
        summaries=pystac.Summaries({"nyceo:classes": list(acfg.classes)}),
    )
    d = coll.to_dict(include_self_link=False, transform_hrefs=False)
    rel = layout.collection_rel(adapter)
    _links(d, rel, layout.CATALOG_REL)
    d["links"] += [{"rel": "item", "href": posixpath.relpath(posixpath.relpath(p, root), posixpath.dirname(rel)),
                    "type": pystac.MediaType.GEOJSON} for p in item_paths]
    _write_if_changed(layout.out_path(config, rel), d, so)
    return rel


def write_root_catalog(config: PipelineConfig) -> str:
    """Rewrite ``catalog.json`` linking every collection on the store."""
    so = layout.storage_options(config)
    fs, root = fsspec.core.url_to_fs(layout.output_root(config), **so)
    colls = sorted(fs.glob(posixpath.join(root, "stac", "*", "collection.json")))
    cat = pystac.Catalog(id=f"nyceo-{config.run.name}", title=f"nyceo outputs ({config.run.name})",
                         description="Monthly TerraMind maps of New York City: Cloud-Optimized GeoTIFFs "
                         "per adapter, borough and month, with quicklooks.")
    d = cat.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [{"rel": "root", "href": "./catalog.json", "type": pystac.MediaType.JSON}] + [
        {"rel": "child", "href": "./" + posixpath.relpath(p, root), "type": pystac.MediaType.JSON} for p in colls]
    _write_if_changed(layout.out_path(config, layout.CATALOG_REL), d, so)
    return layout.CATALOG_REL


def update_catalog(config: PipelineConfig, month: str, adapters: list[str] | None = None) -> str:
    """Write this month's items (every configured area of each adapter), then the collections and root."""
    so = layout.storage_options(config)
    names = adapters or sorted(config.infer.adapters)
    for adapter in names:
        for area in (a for slug, a in configured_areas(config).items() if slug in area_slugs(config, month)):
            rel = layout.item_rel(month, adapter, area.slug)
            d = build_item(config, month, adapter, area).to_dict(include_self_link=False, transform_hrefs=False)
            _links(d, rel, layout.collection_rel(adapter))
            d["links"][1]["rel"] = "collection"
            d["links"].append({**d["links"][1], "rel": "parent"})
            _write_if_changed(layout.out_path(config, rel), d, so)
        write_collection(config, adapter)
    write_root_catalog(config)
    return layout.out_path(config, layout.CATALOG_REL)
