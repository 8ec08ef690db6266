"""STAC items of the change layers, in the outputs' catalog (``catalog.json``).

One collection per adapter, ``stac/change-<adapter>/collection.json``, one item per month x pair x
area, ``stac/change-<adapter>/<YYYY-MM>/change-<adapter>_<pair>_<YYYY-MM>_<area>.json``, covering
the first day of the earlier month to the last day of M, with the layer COGs (data), the
transition quicklook (overview), the change areas and the noise floor (metadata). Relative hrefs;
files are rewritten only when their content changes; the root catalog is relinked by
``nyceo.mosaic.stac.write_root_catalog`` (it lists every ``stac/*/collection.json``).
"""

from __future__ import annotations

import posixpath
from typing import Any

import fsspec
import pystac
from shapely.geometry import mapping

from nyceo import __version__
from nyceo.change import codes, layout
from nyceo.config import PipelineConfig
from nyceo.mosaic import layout as mlayout
from nyceo.mosaic.clip import Area, configured_areas
from nyceo.mosaic.stac import _footprint, _links, _read_json, _write_if_changed, month_range, write_root_catalog

MEDIA = {"csv": "text/csv", "json": pystac.MediaType.JSON, "png": pystac.MediaType.PNG, "tif": pystac.MediaType.COG}


def collection_id(adapter: str) -> str:
    return f"change-{adapter}"


def item_rel(month: str, adapter: str, pair: str, area: str) -> str:
    return f"stac/{collection_id(adapter)}/{month}/{collection_id(adapter)}_{pair}_{month}_{area}.json"


def _assets(config: PipelineConfig, month: str, adapter: str, pair: str, area: str, rec: dict[str, Any]) -> dict[str, str]:
    names = [f"{area}_{l}.tif" for l in (*layout.LAYERS, "persistence")
             if layout.pair_rel(month, adapter, pair, f"{area}_{l}.tif") in rec["files"] or l == "persistence"]
    rels = {n.removeprefix(f"{area}_").removesuffix(".tif"): layout.pair_rel(month, adapter, pair, n) for n in names}
    rels["quicklook"] = layout.pair_rel(month, adapter, pair, f"quicklook/{area}_transition.png")
    rels["areas_csv"] = layout.pair_rel(month, adapter, pair, "areas.csv")
    rels["areas_json"] = layout.pair_rel(month, adapter, pair, "areas.json")
    rels["noise_floor"] = layout.noise_rel(month, adapter)
    return rels


def build_item(config: PipelineConfig, month: str, adapter: str, pair: str, area: Area, rec: dict[str, Any]) -> dict[str, Any]:
    geom = _footprint(area, config.grid.crs)
    start, end = month_range(rec["previous_month"])[0], month_range(month)[1]
    props = {"nyceo:month": month, "nyceo:previous_month": rec["previous_month"], "nyceo:pair": pair,
             "nyceo:adapter": adapter, "nyceo:area": area.slug, "nyceo:area_name": area.name,
             "nyceo:input_key": rec["key"], "nyceo:thresholds_u8": rec["thresholds_u8"],
             "nyceo:false_alarm_rate": config.change.false_alarm_rate,
             "nyceo:transition_codes": {"changed": f"from*{len(config.infer.adapters[adapter].classes)}+to",
                                        "no_change": codes.NO_CHANGE, "uncertain": codes.UNCERTAIN,
                                        "nodata": codes.NODATA},
             "nyceo:software": f"nyceo {__version__}"}
    rel = item_rel(month, adapter, pair, area.slug)
    item = pystac.Item(id=posixpath.basename(rel)[:-5], geometry=mapping(geom), bbox=list(geom.bounds),
                       datetime=None, properties=props, start_datetime=start, end_datetime=end,
                       collection=collection_id(adapter))
    for role, target in _assets(config, month, adapter, pair, area.slug, rec).items():
        ext = target.rsplit(".", 1)[-1]
        kind = ["data"] if ext == "tif" else (["overview"] if ext == "png" else ["metadata"])
        item.add_asset(role, pystac.Asset(href=posixpath.relpath(target, posixpath.dirname(rel)),
                                          media_type=MEDIA[ext], roles=kind, title=f"{adapter} {pair} {role}, {area.name}"))
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    _links(d, rel, _coll_rel(adapter))
    d["links"][1]["rel"] = "collection"
    d["links"].append({**d["links"][1], "rel": "parent"})
    return d


def _coll_rel(adapter: str) -> str:
    return f"stac/{collection_id(adapter)}/collection.json"


def write_collection(config: PipelineConfig, adapter: str) -> None:
    so = mlayout.storage_options(config)
    fs, root = fsspec.core.url_to_fs(mlayout.output_root(config), **so)
    paths = sorted(fs.glob(posixpath.join(root, "stac", collection_id(adapter), "*", "*.json")))
    items = [_read_json(fs, p) for p in paths]
    bboxes = [i["bbox"] for i in items] or [[-180.0, -90.0, 180.0, 90.0]]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes), max(b[3] for b in bboxes)]
    times = [(i["properties"]["start_datetime"], i["properties"]["end_datetime"]) for i in items]
    interval = [min(t[0] for t in times), max(t[1] for t in times)] if times else [None, None]
    coll = pystac.Collection(
        id=collection_id(adapter), title=f"nyceo change {adapter}", license="other",
        description=f"Month-over-month and year-over-year change of {adapter} per borough and city, gated by "
                    f"a measured noise floor (false-alarm rate {config.change.false_alarm_rate}).",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent(
            [[pystac.utils.str_to_datetime(t) if t else None for t in interval]])))
    d = coll.to_dict(include_self_link=False, transform_hrefs=False)
    rel = _coll_rel(adapter)
    _links(d, rel, mlayout.CATALOG_REL)
    d["links"] += [{"rel": "item", "href": posixpath.relpath(posixpath.relpath(p, root), posixpath.dirname(rel)),
                    "type": pystac.MediaType.GEOJSON} for p in paths]
    _write_if_changed(mlayout.out_path(config, rel), d, so)


def update_catalog(config: PipelineConfig, month: str, records: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Items of every done pair of ``month`` ({adapter: {pair: record}}), collections, root catalog."""
    so = mlayout.storage_options(config)
    for adapter, pairs in records.items():
        done = {p: r for p, r in pairs.items() if r and r.get("state") == "done"}
        if not done:
            continue
        for pair, rec in done.items():
            for area in configured_areas(config).values():
                d = build_item(config, month, adapter, pair, area, rec)
                _write_if_changed(mlayout.out_path(config, item_rel(month, adapter, pair, area.slug)), d, so)
        write_collection(config, adapter)
        write_root_catalog(config)
