"""Where the mosaic stage writes: one place for COG, sidecar, quicklook and STAC names.

Layout under the output root (``mosaic.output_root`` or ``run.output_root``)::

    <YYYY-MM>/cog/<adapter>/<area>.tif               class map (uint8, colour table)
    <YYYY-MM>/cog/<adapter>/<area>.tif.aux.xml       GDAL category names (PAM sidecar)
    <YYYY-MM>/cog/<adapter>/<area>_confidence.tif    max p * 254 (uint8)
    <YYYY-MM>/cog/<adapter>/<area>_probability.tif   p(class) * 254 (mosaic.probability_classes)
    <YYYY-MM>/quicklook/<adapter>/<area>.png         quicklook with legend and title
    <YYYY-MM>/quicklook/<adapter>/<area>_thumb.png   small thumbnail (STAC role thumbnail)
    catalog.json                                     STAC root catalog
    stac/<adapter>/collection.json                   one collection per adapter
    stac/<adapter>/<YYYY-MM>/<adapter>_<YYYY-MM>_<area>.json   one item per month x area
"""

from __future__ import annotations

from typing import Any

from nyceo.config import PipelineConfig
from nyceo.io import join
from nyceo.paths import check_month

CITY_AREA = "nyc"
LAYERS = ("class", "confidence", "probability")


def output_root(config: PipelineConfig) -> str:
    """Root of published mosaic outputs (local path or fsspec URL)."""
    return config.mosaic.output_root or config.run.output_root


def storage_options(config: PipelineConfig) -> dict[str, Any]:
    return dict(config.mosaic.storage_options)


def layer_rel(month: str, adapter: str, area: str, layer: str) -> str:
    """Path of a COG layer relative to the output root."""
    if layer not in LAYERS:
        raise ValueError(f"unknown COG layer '{layer}'; expected one of {LAYERS}")
    suffix = "" if layer == "class" else f"_{layer}"
    return f"{check_month(month)}/cog/{adapter}/{area}{suffix}.tif"


def quicklook_rel(month: str, adapter: str, area: str, thumbnail: bool = False) -> str:
    suffix = "_thumb" if thumbnail else ""
    return f"{check_month(month)}/quicklook/{adapter}/{area}{suffix}.png"


def item_id(month: str, adapter: str, area: str) -> str:
    return f"{adapter}_{check_month(month)}_{area}"


def item_rel(month: str, adapter: str, area: str) -> str:
    return f"stac/{adapter}/{month}/{item_id(month, adapter, area)}.json"


def collection_rel(adapter: str) -> str:
    return f"stac/{adapter}/collection.json"


CATALOG_REL = "catalog.json"


def out_path(config: PipelineConfig, rel: str) -> str:
    """Absolute path (or URL) of an output given relative to the output root."""
    return join(output_root(config), *rel.split("/"))
