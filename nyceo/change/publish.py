"""Write change rasters as borough + city COGs (colour tables, tags) and transition quicklooks.

Reuses the mosaic stage's writer and clipping: ``nyceo.mosaic.cog.write_cog`` (GDAL COG driver,
nodata 255, MODE overviews for codes), ``nyceo.mosaic.clip`` (a pixel belongs to an area when its
centre is inside the polygon) and ``nyceo.mosaic.stage.publish`` (staged files moved atomically).
Every COG carries ``NYCEO_INPUT_KEY`` (the pair's key) and ``NYCEO_PROVENANCE``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from nyceo.change import codes
from nyceo.config import PipelineConfig
from nyceo.mosaic.clip import Area, area_mask, area_window
from nyceo.mosaic.cog import CogBand, provenance_tags, write_cog
from nyceo.mosaic.quicklook import render_quicklook


def layer_band(layer: str, adapter: str, classes: list[str], colors: list[str]) -> CogBand:
    """What each change layer's band means (colour table, scale, tags)."""
    k = len(classes)
    changes = [c for c in range(k * k) if c // k != c % k]
    names = {str(c): codes.transition_name(c, classes) for c in (*changes, codes.NO_CHANGE, codes.UNCERTAIN)}
    special = {"NO_CHANGE": str(codes.NO_CHANGE), "UNCERTAIN": str(codes.UNCERTAIN), "NODATA": str(codes.NODATA)}
    if layer == "transition":
        return CogBand(f"{adapter} transition (from*{k}+to)", "mode", codes.NODATA,
                       codes.transition_colormap(colors), band_tags={"CODES": json.dumps(names), **special})
    if layer in ("gain", "loss"):
        return CogBand(f"{adapter} class {'gained' if layer == 'gain' else 'lost'}", "mode", codes.NODATA,
                       codes.class_change_colormap(colors), band_tags={"CLASS_NAMES": json.dumps(classes), **special})
    if layer == "confidence":
        return CogBand(f"{adapter} change confidence (null CDF of the shift * 254)", "average", codes.NODATA,
                       scale=1 / 254, band_tags={"UNITS": "probability"})
    if layer == "building":
        cmap = {0: (230, 230, 230, 255), 1: (227, 26, 28, 255), 2: (31, 120, 180, 255),
                codes.UNCERTAIN: (120, 120, 120, 255), codes.NODATA: (0, 0, 0, 0)}
        return CogBand(f"{adapter} building change (0 none, 1 new, 2 vanished, 254 uncertain)", "mode",
                       codes.NODATA, cmap, band_tags={"CODES": json.dumps({"0": "none", "1": "new", "2": "vanished",
                                                                           "254": "uncertain"})})
    if layer == "building_dp":
        return CogBand(f"{adapter} change of building probability ((v-127)*2/254)", "average", codes.NODATA,
                       scale=codes.DP_SCALE, offset=-codes.DP_OFFSET * codes.DP_SCALE,
                       band_tags={"UNITS": "probability difference", "ENCODING": "dp = (value - 127) * 2 / 254"})
    if layer == "persistence":
        cmap = {0: (230, 230, 230, 255), 1: (253, 191, 111, 255), 2: (227, 26, 28, 255), 3: (166, 206, 227, 255),
                codes.NODATA: (0, 0, 0, 0)}
        return CogBand(f"{adapter} change persistence", "mode", codes.NODATA, cmap,
                       band_tags={"CODES": json.dumps({str(k): v for k, v in codes.PERSIST_NAMES.items()})})
    raise ValueError(f"unknown change layer '{layer}'")


def clip(data: np.ndarray, area: Area, transform: Affine) -> tuple[np.ndarray, Affine, Window]:
    """The area's window of a full-grid raster, NODATA outside the polygon."""
    window = area_window(area.geometry, transform, data.shape[0], data.shape[1])
    wt = window_transform(window, transform)
    rows, cols = window.toslices()
    out = data[rows, cols].copy()
    out[~area_mask(area.geometry, wt, out.shape)] = codes.NODATA
    return out, wt, window


def stage_layers(config: PipelineConfig, layers: dict[str, np.ndarray], areas: dict[str, Area], transform: Affine,
                 crs: Any, rels: dict[tuple[str, str], str], bands: dict[str, CogBand], key: str,
                 prov: dict[str, Any], staging: Path) -> tuple[list[tuple[Path, str]], dict[str, np.ndarray]]:
    """COGs of every (layer, area) into ``staging``; also returns each area's clipped transition."""
    m, staged, clipped = config.mosaic, [], {}
    for slug, area in areas.items():
        for layer, data in layers.items():
            part, wt, _ = clip(data, area, transform)
            if layer == "transition":
                clipped[slug] = part
            dest = staging / Path(rels[(layer, slug)]).name
            write_cog(part, wt, crs, dest, bands[layer], blocksize_px=m.blocksize_px, compression=m.compression,
                      tags=provenance_tags(key, {**prov, "area": slug, "layer": layer}))
            staged.append((dest, rels[(layer, slug)]))
    return staged, clipped


def transition_quicklook(part: np.ndarray, classes: list[str], colors: list[str], title: str, dest: Path,
                         max_px: int) -> Path:
    """Quicklook of a transition raster: legend lists no change, uncertain and the transitions present."""
    present = [int(c) for c in np.unique(part) if c < len(classes) ** 2]
    order = [codes.NO_CHANGE, codes.UNCERTAIN, *present]
    lut = np.full(256, 255, np.uint8)
    lut[order] = np.arange(len(order), dtype=np.uint8)
    cmap = codes.transition_colormap(colors)
    hexes = ["#%02x%02x%02x" % cmap[c][:3] for c in order]
    step = max(1, int(np.ceil(max(part.shape) / max_px)))
    return render_quicklook(lut[part[::step, ::step]], [codes.transition_name(c, classes) for c in order], hexes,
                            title, dest, max_px, caption="change gated by the measured noise floor")


def staging_dir(final_dir: str) -> Path:
    """A temporary folder beside the final files (local root) or in the system temp folder."""
    from nyceo.io import is_remote

    if is_remote(final_dir):
        return Path(tempfile.mkdtemp(prefix="nyceo-change-"))
    Path(final_dir).mkdir(parents=True, exist_ok=True)
    for stale in Path(final_dir).glob(".staging-change-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=".staging-change-", dir=final_dir))
