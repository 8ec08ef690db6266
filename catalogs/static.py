"""A static STAC catalog on disk (pystac), searched in memory; helpers to build and write items.

``StaticCatalog(path)`` reads ``catalog.json`` once, resolves relative asset hrefs to absolute local
paths and filters by collection, bbox (EPSG:4326), datetime [start, end) and a CQL2-JSON subset
(``catalogs/cql2.py``). ``item_from_files`` turns raster files into a STAC item with ``proj:*`` and
``raster:bands`` metadata read from the files, so any GeoTIFF can be read through the same path as
Planetary Computer items.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping

import pystac
import rasterio
from rasterio.warp import transform_geom
from shapely.geometry import box, mapping, shape

from catalogs.cql2 import evaluate

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"


def as_utc(value: dt.datetime) -> dt.datetime:
    """``value`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _item_interval(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    if item.datetime is not None:
        t = as_utc(item.datetime)
        return t, t
    props = item.properties
    start = pystac.utils.str_to_datetime(props["start_datetime"])
    end = pystac.utils.str_to_datetime(props["end_datetime"])
    return as_utc(start), as_utc(end)


def item_matches(
    item: pystac.Item,
    collection: str,
    bbox_lonlat: tuple[float, float, float, float],
    start: dt.datetime,
    end: dt.datetime,
    cql2_filter: dict[str, Any] | None = None,
) -> bool:
    """True when ``item`` is in ``collection``, intersects ``bbox_lonlat`` and lies in [start, end)."""
    if item.collection_id != collection:
        return False
    if item.bbox is not None:
        minx, miny, maxx, maxy = bbox_lonlat
        ix0, iy0, ix1, iy1 = item.bbox
        if ix0 > maxx or ix1 < minx or iy0 > maxy or iy1 < miny:
            return False
        if item.geometry is not None and not shape(item.geometry).intersects(box(*bbox_lonlat)):
            return False
    t0, t1 = _item_interval(item)
    if t1 < as_utc(start) or t0 >= as_utc(end):
        return False
    return cql2_filter is None or evaluate(cql2_filter, item)


class StaticCatalog:
    """Scenes from a static STAC catalog (``catalog.json``) on local disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.name = f"static:{self.path}"
        self._items: list[pystac.Item] | None = None

    def _load(self) -> list[pystac.Item]:
        if self._items is None:
            if not self.path.is_file():
                raise FileNotFoundError(
                    f"static STAC catalog {self.path} does not exist; set catalog.url to the path of "
                    "a catalog.json (e.g. one written by catalogs.static.write_static_catalog)"
                )
            root = pystac.Catalog.from_file(str(self.path))
            items = list(root.get_items(recursive=True))
            for item in items:
                item.make_asset_hrefs_absolute()
                for asset in item.assets.values():
                    if asset.href.startswith("file://"):
                        asset.href = asset.href[len("file://"):]
            self._items = items
        return self._items

    def search(
        self,
        collection: str,
        bbox_lonlat: tuple[float, float, float, float],
        start: dt.datetime,
        end: dt.datetime,
        cql2_filter: dict[str, Any] | None = None,
    ) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``bbox_lonlat`` with datetime in [start, end)."""
        found = [
            item.clone()
            for item in self._load()
            if item_matches(item, collection, bbox_lonlat, start, end, cql2_filter)
        ]
        return sorted(found, key=lambda it: (_item_interval(it)[0], it.id))

    def sign(self, item: pystac.Item) -> pystac.Item:
        """Local files need no signing: a copy, after checking every asset file exists."""
        for key, asset in item.assets.items():
            if "://" not in asset.href and not Path(asset.href).is_file():
                raise FileNotFoundError(
                    f"asset {key!r} of scene {item.id!r} ({item.collection_id}) points to "
                    f"{asset.href}, which does not exist; regenerate or re-copy the static catalog "
                    f"{self.path}"
                )
        return item.clone()


def json_geometry(geometry: Mapping[str, Any]) -> dict[str, Any]:
    """A GeoJSON geometry with lists instead of tuples (stable JSON, equality-comparable)."""
    return json.loads(json.dumps(mapping(shape(geometry))))


def _asset_metadata(path: Path) -> tuple[dict[str, Any], int | None, Any]:
    with rasterio.open(path) as src:
        band = {"data_type": src.dtypes[0], "spatial_resolution": abs(src.transform.a)}
        if src.nodata is not None:
            band["nodata"] = src.nodata if src.nodata == src.nodata else "nan"
        fields = {
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
            "proj:bbox": list(src.bounds),
            "raster:bands": [band] * src.count,
        }
        epsg = src.crs.to_epsg() if src.crs else None
        outline = box(*src.bounds).segmentize(max(src.width, src.height) * abs(src.transform.a) / 20)
        footprint = json_geometry(transform_geom(src.crs, "EPSG:4326", mapping(outline)))
    return fields, epsg, footprint


def item_from_files(
    item_id: str,
    collection: str,
    datetime: dt.datetime,
    assets: Mapping[str, str | Path],
    properties: dict[str, Any] | None = None,
    asset_fields: Mapping[str, dict[str, Any]] | None = None,
    geometry_lonlat: dict[str, Any] | None = None,
) -> pystac.Item:
    """A STAC item whose assets are the raster files ``assets`` (key -> path).

    ``proj:epsg`` (item), ``proj:shape``/``proj:transform``/``proj:bbox`` and ``raster:bands``
    (per asset) are read from the files; ``asset_fields`` adds or overrides asset fields (e.g.
    ``{"vv": {"raster:bands": [{"unit": "dB", ...}]}}``). The geometry is the footprint of the
    first asset unless ``geometry_lonlat`` is given.
    """
    if not assets:
        raise ValueError(f"item {item_id!r}: give at least one asset file")
    meta = {}
    for key, path in assets.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"item {item_id!r}: asset {key!r} file {path} does not exist")
        meta[key] = _asset_metadata(Path(path))
    epsgs = {m[1] for m in meta.values()}
    if len(epsgs) != 1:
        raise ValueError(f"item {item_id!r}: assets are in different CRSs {sorted(map(str, epsgs))}")
    geometry = geometry_lonlat or next(iter(meta.values()))[2]
    props = {"proj:epsg": epsgs.pop(), **(properties or {})}
    item = pystac.Item(
        id=item_id, geometry=geometry, bbox=list(shape(geometry).bounds),
        datetime=as_utc(datetime), properties=props, collection=collection,
    )
    for key, path in assets.items():
        extra = {**meta[key][0], **((asset_fields or {}).get(key, {}))}
        item.add_asset(key, pystac.Asset(
            href=str(Path(path).resolve()), media_type=COG_MEDIA_TYPE, roles=["data"],
            title=key, extra_fields=extra,
        ))
    return item


def write_static_catalog(
    items: Iterable[pystac.Item], out_dir: str | Path, catalog_id: str, description: str
) -> Path:
    """Write ``items`` as a self-contained static catalog at ``out_dir/catalog.json``.

    Asset hrefs become relative when the files live under ``out_dir``. The catalog JSON is
    written into a temporary folder first and moved in place file by file at the end, catalog.json
    last, so a reader never sees a catalog pointing at missing item files.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".catalog-{uuid.uuid4().hex}"
    try:
        cat = pystac.Catalog(id=catalog_id, description=description)
        for item in items:
            cat.add_item(item.clone())
        cat.normalize_hrefs(str(tmp))
        for item in cat.get_items(recursive=True):
            for asset in item.assets.values():
                src = Path(asset.href)
                if src.is_absolute() and out_dir in src.parents:
                    final_dir = out_dir / Path(item.get_self_href()).parent.relative_to(tmp)
                    asset.href = os.path.relpath(src, final_dir)
        cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
        for path in sorted(tmp.rglob("*.json"), key=lambda p: p.name == "catalog.json"):
            dest = out_dir / path.relative_to(tmp)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir / "catalog.json"
