"""The mosaic stage: one adapter -> clipped COGs, category sidecar, quicklook, thumbnail per area.

The published (complete, current) prediction store of an adapter is read once — its chunk
manifests checked first, a damaged or missing chunk refused — and every area is clipped from it.

Files are staged in a temporary folder (beside the final files for a local output root, so the
final ``os.replace`` is atomic; in the system temp folder for a remote root, then uploaded with
``nyceo.io.upload_file_atomic``). An area whose published COGs carry the same input key (hash of
the prediction store's provenance, the mosaic settings, the adapter's classes and colours, the
area and the software version) is not rewritten.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from rasterio.windows import transform as window_transform

from nyceo import __version__
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, upload_file_atomic
from nyceo.mosaic import layout
from nyceo.mosaic.clip import Area, area_mask, area_window, get_area
from nyceo.mosaic.cog import (CogBand, category_sidecar_xml, class_colormap, provenance_tags,
                              read_input_key, write_cog)
from nyceo.keys import mosaic_key
from nyceo.mosaic.predstore import NODATA, PROB_SCALE, PredStore, PredStoreError, open_pred_store
from nyceo.mosaic.quicklook import read_downsampled, render_quicklook, render_thumbnail
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


def input_key(config: PipelineConfig, pred_key_: str, adapter: str, area: str) -> str:
    """The area's key: pred key + mosaic settings + classes/colours + area (``nyceo.keys.mosaic_key``)."""
    return mosaic_key(pred_key_, config, adapter, area)


def _exists(path: str, storage_options: dict[str, Any]) -> bool:
    if is_remote(path):
        fs, p = fsspec.core.url_to_fs(path, **storage_options)
        return bool(fs.exists(p))
    return Path(path).is_file()


def is_up_to_date(config: PipelineConfig, rels: dict[str, str], key: str) -> bool:
    """True when every file exists and every COG carries ``key`` and (local) decodes completely."""
    so = layout.storage_options(config)
    for role, rel in rels.items():
        path = layout.out_path(config, rel)
        if rel.endswith(".tif"):
            if read_input_key(path, so, verify=True) != key:
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


def _relative(config: PipelineConfig, path: str) -> str:
    """``path`` relative to run.output_root (provenance survives moving the output folder)."""
    root = config.run.output_root.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def _stage_files(config: PipelineConfig, month: str, adapter: str, area: Area, store: "LoadedPred",
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
                               area_name=area.name, layer=layer, input_key=key, pred_store=_relative(config, store.path),
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


class LoadedPred:
    """The layers of a prediction store held in memory (read once per adapter, clipped per area)."""

    def __init__(self, store: PredStore, layers: dict[str, np.ndarray]) -> None:
        self.store, self.layers = store, layers
        self.path, self.transform, self.crs = store.path, store.transform, store.crs
        self.height_px, self.width_px, self.provenance = store.height_px, store.width_px, store.provenance

    def read(self, layer: str, window: Any, class_index: int | None = None) -> np.ndarray:
        rows, cols = window.toslices()
        name = f"probability:{class_index}" if layer == "probability" else ("class_map" if layer == "class" else layer)
        return self.layers[name][rows, cols].copy()


def load_current_pred(config: PipelineConfig, month: str, adapter: str) -> tuple[LoadedPred, str]:
    """The current, complete prediction store of ``adapter`` (checked, then read once) and its key.

    Refuses a store that is not published with the key the configuration asks for, and one whose
    chunks are missing or cannot be decoded (those blocks are invalidated so `nyceo infer` rewrites them).
    """
    from nyceo.infer.contract import adapter_status, current_pred, damaged_blocks, invalidate_pred_blocks

    found = current_pred(config, month, adapter)
    if found is None:
        st = adapter_status(config, month, adapter)
        raise PredStoreError(
            f"predictions of adapter '{adapter}' for {month} are not complete and current ({st.describe()}"
            f"{': ' + st.reason if st.reason else ''}); run `nyceo infer --month {month} -a {adapter} -c CONFIG` first")
    bad = damaged_blocks(config, month, adapter)
    if bad:
        invalidate_pred_blocks(config, month, adapter, sorted(bad))
        raise PredStoreError(
            f"prediction store {found[0]} is damaged: chunk files missing or changed in block(s) "
            f"{ {b: c[:3] for b, c in sorted(bad.items())} }; the store was unpublished and those blocks "
            f"marked for rebuilding: run `nyceo infer --month {month} -a {adapter} -c CONFIG`")
    store = open_pred_store(found[0], config, adapter)
    return LoadedPred(store, _read_layers(config, month, adapter, store)), found[1]


def _read_layers(config: PipelineConfig, month: str, adapter: str, store: PredStore) -> dict[str, np.ndarray]:
    names = {"class_map": None, "confidence": None}
    prob = config.mosaic.probability_classes.get(adapter)
    if prob is not None:
        names[f"probability:{list(store.classes).index(prob)}"] = None
    out = {}
    for name in names:
        arr, _, ci = name.partition(":")
        try:
            out[name] = np.asarray(store.group[arr][int(ci)] if ci else store.group[arr][...], dtype=np.uint8)
        except Exception as exc:  # noqa: BLE001 - a damaged chunk: name it and rebuild its block
            raise _damaged(config, month, adapter, store, arr, exc) from exc
    return out


def _damaged(config: PipelineConfig, month: str, adapter: str, store: PredStore, arr: str, exc: Exception) -> Exception:
    from nyceo.infer.contract import invalidate_pred_blocks
    from nyceo.infer.store import block_markers

    bad = [b for b, m in block_markers(store.path).items()
           if any(_undecodable(store, rel) for rel in m.get("chunks", {}) if rel.startswith(f"{arr}/"))]
    invalidate_pred_blocks(config, month, adapter, bad)
    return PredStoreError(f"prediction store {store.path}: array {arr} cannot be decoded ({type(exc).__name__}: "
                          f"{exc}) in block(s) {bad}; the store was unpublished and those blocks marked for "
                          f"rebuilding: run `nyceo infer --month {month} -a {adapter} -c CONFIG`")


def _undecodable(store: PredStore, rel: str) -> bool:
    from nyceo.chunks import chip_of

    arr, r, c = chip_of(rel)
    size = int(store.group[arr].chunks[-1])
    try:
        store.group[arr][..., r * size:(r + 1) * size, c * size:(c + 1) * size]
        return False
    except Exception:  # noqa: BLE001
        return True


def mosaic_adapter(config: PipelineConfig, month: str, adapter: str, areas: list[str] | None = None,
                   force: bool = False) -> list[AreaOutputs]:
    """Publish every (or the listed) area of one adapter, reading its prediction store once."""
    if adapter not in config.infer.adapters:
        raise ValueError(f"adapter '{adapter}' is not in infer.adapters ({sorted(config.infer.adapters)}); "
                         "add it to the config or drop it from --adapters")
    from nyceo.infer.contract import current_pred

    found = current_pred(config, month, adapter)
    slugs = areas or area_slugs(config, month)
    outs, todo = [], []
    for slug in slugs:
        rels = output_rels(config, month, adapter, slug)
        key = input_key(config, found[1], adapter, slug) if found else ""
        out = AreaOutputs(month, adapter, slug, key, skipped=True, files=rels)
        outs.append(out)
        if force or not found or not is_up_to_date(config, rels, key):
            todo.append(out)
    if todo:
        pred, pkey = load_current_pred(config, month, adapter)
        for out in todo:
            out.input_key = input_key(config, pkey, adapter, out.area)
            _publish_area(config, month, adapter, get_area(config, out.area), pred, out)
    return outs


def _publish_area(config: PipelineConfig, month: str, adapter: str, area: Area, pred: LoadedPred,
                  out: AreaOutputs) -> None:
    staging = _staging_dir(config, out.files["class"], area.slug)
    try:
        publish(config, _stage_files(config, month, adapter, area, pred, out.files, out.input_key, staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    out.skipped = False


def mosaic_area(config: PipelineConfig, month: str, adapter: str, area_slug: str,
                force: bool = False) -> AreaOutputs:
    """Publish the COGs, category sidecar, quicklook and thumbnail of one adapter x area."""
    return mosaic_adapter(config, month, adapter, [get_area(config, area_slug).slug], force)[0]


def mosaic_up_to_date(config: PipelineConfig, month: str, adapter: str) -> tuple[int, int]:
    """(areas whose COGs carry the current key, areas) of one adapter; (0, n) while infer is not current."""
    from nyceo.infer.contract import current_pred

    slugs = area_slugs(config, month)
    found = current_pred(config, month, adapter)
    if found is None:
        return 0, len(slugs)
    ok = sum(is_up_to_date(config, output_rels(config, month, adapter, s), input_key(config, found[1], adapter, s))
             for s in slugs)
    return ok, len(slugs)


def area_slugs(config: PipelineConfig, month: str | None = None) -> list[str]:
    """Areas one month publishes per adapter: the configured boroughs' slugs, then 'nyc' — only
    those that hold at least one pixel centre of the month's chips (a partial run, e.g.
    ``acquire.chip_ids`` over Manhattan, publishes no empty Brooklyn file)."""
    from shapely.geometry import box

    from nyceo.acquire.stage import locate
    from nyceo.mosaic.clip import configured_areas

    areas = configured_areas(config)
    if month is None:
        return list(areas)
    a = locate(config, month).area
    half = config.grid.resolution_m / 2
    minx, miny, maxx, maxy = a.bounds
    centres = box(minx + half, miny + half, maxx - half, maxy - half)
    return [slug for slug, area in areas.items() if area.geometry.intersects(centres)]


def mosaic_month(config: PipelineConfig, month: str, adapters: list[str] | None = None) -> list[AreaOutputs]:
    """Every configured area of every (selected) adapter for a month, one adapter after the other."""
    names = adapters or sorted(config.infer.adapters)
    return [out for a in names for out in mosaic_adapter(config, month, a)]
