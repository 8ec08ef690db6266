"""The mosaic stage: one adapter x area -> clipped COGs, category sidecar, quicklook, thumbnail.

Files are staged in a temporary folder (beside the final files for a local output root, so the
final ``os.replace`` is atomic; in the system temp folder for a remote root, then uploaded with
``nyceo.io.upload_file_atomic``). An area whose published COGs carry the same input key (hash of
the prediction store's provenance, the mosaic settings, the adapter's classes and colours, the
area and the software version) is not rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
from rasterio.windows import transform as window_transform

from nyceo import __version__
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, upload_file_atomic
from nyceo.mosaic import layout
from nyceo.mosaic.clip import Area, area_mask, area_window, get_area
from nyceo.mosaic.cog import (CogBand, category_sidecar_xml, class_colormap, provenance_tags,
                              read_input_key, write_cog)
from nyceo.mosaic.predstore import NODATA, PROB_SCALE, PredStore, content_fingerprint, open_pred_store
from nyceo.mosaic.quicklook import read_downsampled, render_quicklook, render_thumbnail
from nyceo.paths import pred_store
from nyceo.provenance import base_provenance


@dataclass
class AreaOutputs:
    """What ``mosaic_area`` published (paths relative to the output root) or found up to date."""

    month: str
    adapter: str
    area: str
    input_key: str
    skipped: bool
    files: dict[str, str] = field(default_factory=dict)


def published_layers(config: PipelineConfig, adapter: str, classes: list[str]) -> list[str]:
    """COG layers of an adapter: class map and confidence, plus probability when configured."""
    layers = ["class", "confidence"]
    prob = config.mosaic.probability_classes.get(adapter)
    if prob is not None:
        if prob not in classes:
            raise ValueError(f"mosaic.probability_classes.{adapter} = '{prob}' is not one of the adapter's "
                             f"classes {classes}; fix the config")
        layers.append("probability")
    return layers


def output_rels(config: PipelineConfig, month: str, adapter: str, area: str) -> dict[str, str]:
    """Every file of one adapter x area, by role, relative to the output root."""
    classes = list(config.infer.adapters[adapter].classes)
    rels = {layer: layout.layer_rel(month, adapter, area, layer)
            for layer in published_layers(config, adapter, classes)}
    rels["categories"] = rels["class"] + ".aux.xml"
    rels["quicklook"] = layout.quicklook_rel(month, adapter, area)
    rels["thumbnail"] = layout.quicklook_rel(month, adapter, area, thumbnail=True)
    return rels


def input_key(config: PipelineConfig, store: PredStore, adapter: str, area: str) -> str:
    """sha256 of everything an area's outputs are made from."""
    mosaic = config.mosaic.model_dump(mode="json", exclude={"output_root", "storage_options"})
    spec = {"pred_provenance": store.provenance, "pred_files": content_fingerprint(store.path),
            "pred_inputs_key": store.group.attrs.get("inputs_key"), "mosaic": mosaic, "area": area, "adapter": adapter,
            "classes": list(config.infer.adapters[adapter].classes),
            "colors": list(config.infer.adapters[adapter].colors),
            "grid": [config.grid.crs, config.grid.resolution_m], "software": __version__}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _exists(path: str, storage_options: dict[str, Any]) -> bool:
    if is_remote(path):
        fs, p = fsspec.core.url_to_fs(path, **storage_options)
        return bool(fs.exists(p))
    return Path(path).is_file()


def is_up_to_date(config: PipelineConfig, rels: dict[str, str], key: str) -> bool:
    """True when every file exists and every COG carries ``key``."""
    so = layout.storage_options(config)
    for role, rel in rels.items():
        path = layout.out_path(config, rel)
        if rel.endswith(".tif"):
            if read_input_key(path, so) != key:
                return False
        elif not _exists(path, so):
            return False
    return True


def _staging_dir(config: PipelineConfig, cog_rel: str, area: str) -> Path:
    prefix = f".staging-{area}--"
    if is_remote(layout.output_root(config)):
        return Path(tempfile.mkdtemp(prefix=f"nyceo-mosaic{prefix}"))
    folder = Path(layout.out_path(config, cog_rel)).parent
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"{prefix}*"):  # left by a killed run of this same area
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=folder))


def publish(config: PipelineConfig, staged: list[tuple[Path, str]]) -> None:
    """Move finished staged files to their final names (rename locally, atomic upload remotely)."""
    so = layout.storage_options(config)
    for local, rel in staged:
        dest = layout.out_path(config, rel)
        if is_remote(dest):
            upload_file_atomic(local, dest, so)
        else:
            Path(dest).parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, dest)


def _layer_band(config: PipelineConfig, adapter: str, layer: str) -> tuple[CogBand, int | None]:
    acfg = config.infer.adapters[adapter]
    if layer == "class":
        tags = {"CLASS_NAMES": json.dumps(list(acfg.classes)),
                **{f"CLASS_{i}": n for i, n in enumerate(acfg.classes)}}
        return CogBand(f"{adapter} class", "mode", NODATA, class_colormap(list(acfg.colors)),
                       band_tags=tags), None
    if layer == "confidence":
        return CogBand(f"{adapter} confidence (max p * {PROB_SCALE})", "average", NODATA,
                       scale=1 / PROB_SCALE, band_tags={"UNITS": "probability"}), None
    name = config.mosaic.probability_classes[adapter]
    return CogBand(f"{adapter} probability of {name} (p * {PROB_SCALE})", "average", NODATA,
                   scale=1 / PROB_SCALE, band_tags={"CLASS": name, "UNITS": "probability"}), \
        list(acfg.classes).index(name)


def _stage_files(config: PipelineConfig, month: str, adapter: str, area: Area, store: PredStore,
                 rels: dict[str, str], key: str, staging: Path) -> list[tuple[Path, str]]:
    window = area_window(area.geometry, store.transform, store.height_px, store.width_px)
    wt = window_transform(window, store.transform)
    outside = ~area_mask(area.geometry, wt, (int(window.height), int(window.width)))
    mcfg, acfg, staged = config.mosaic, config.infer.adapters[adapter], []
    for layer in (r for r in ("class", "confidence", "probability") if r in rels):
        band, ci = _layer_band(config, adapter, layer)
        data = store.read(layer, window, ci)
        data[outside] = NODATA
        prov = base_provenance(config, "mosaic", month=month, adapter=adapter, area=area.slug,
                               area_name=area.name, layer=layer, input_key=key, pred_store=store.path,
                               pred_provenance=store.provenance, clip="pixel centres in polygon")
        dest = staging / Path(rels[layer]).name
        write_cog(data, wt, store.crs, dest, band, blocksize_px=mcfg.blocksize_px,
                  compression=mcfg.compression, tags=provenance_tags(key, prov))
        staged.append((dest, rels[layer]))
    sidecar = staging / Path(rels["categories"]).name
    sidecar.write_text(category_sidecar_xml(list(acfg.classes)))
    staged.append((sidecar, rels["categories"]))
    small = read_downsampled(staged[0][0], mcfg.quicklook_max_px)
    title = f"{area.name}, {month} - adapter {adapter}"
    caption = f"EPSG:32618, {config.grid.resolution_m:g} m pixels; nyceo {__version__}"
    ql = render_quicklook(small, list(acfg.classes), list(acfg.colors), title,
                          staging / "quicklook.png", mcfg.quicklook_max_px, caption=caption)
    th = render_thumbnail(small, list(acfg.colors), staging / "thumb.png", mcfg.thumbnail_max_px)
    return staged + [(ql, rels["quicklook"]), (th, rels["thumbnail"])]


def mosaic_area(config: PipelineConfig, month: str, adapter: str, area_slug: str,
                force: bool = False) -> AreaOutputs:
    """Publish the COGs, category sidecar, quicklook and thumbnail of one adapter x area."""
    if adapter not in config.infer.adapters:
        raise ValueError(f"adapter '{adapter}' is not in infer.adapters ({sorted(config.infer.adapters)}); "
                         "add it to the config or drop it from --adapters")
    area = get_area(config, area_slug)
    store = open_pred_store(pred_store(config, month, adapter), config, adapter)
    rels = output_rels(config, month, adapter, area.slug)
    key = input_key(config, store, adapter, area.slug)
    out = AreaOutputs(month, adapter, area.slug, key, skipped=True, files=rels)
    if not force and is_up_to_date(config, rels, key):
        return out
    staging = _staging_dir(config, rels["class"], area.slug)
    try:
        publish(config, _stage_files(config, month, adapter, area, store, rels, key, staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out.skipped = False
    return out


def area_slugs(config: PipelineConfig) -> list[str]:
    """Areas one month publishes per adapter: the configured boroughs' slugs, then 'nyc'."""
    from nyceo.mosaic.clip import configured_areas

    return list(configured_areas(config))


def mosaic_month(config: PipelineConfig, month: str, adapters: list[str] | None = None) -> list[AreaOutputs]:
    """Every configured area of every (selected) adapter for a month, one after the other."""
    names = adapters or sorted(config.infer.adapters)
    return [mosaic_area(config, month, a, slug) for a in names for slug in area_slugs(config)]
