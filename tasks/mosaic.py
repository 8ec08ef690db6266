"""Mosaic tasks: one per adapter x area (COGs, quicklooks), one catalog update per month."""

from __future__ import annotations

from prefect import task

from nyceo.config import load_config
from nyceo.mosaic.stac import update_catalog
from nyceo.mosaic.stage import mosaic_adapter, mosaic_area


@task(name="mosaic-area", retries=1)
def mosaic_area_task(config_path: str, month: str, adapter: str, area: str) -> dict[str, str]:
    """Publish one adapter x area; return {role: path relative to the output root} (+ skipped flag)."""
    out = mosaic_area(load_config(config_path), month, adapter, area)
    return {**out.files, "skipped": str(out.skipped), "input_key": out.input_key}


@task(name="mosaic-adapter", retries=1)
def mosaic_adapter_task(config_path: str, month: str, adapter: str) -> dict[str, int]:
    """Publish every area of one adapter (prediction store read once); counts written / up to date."""
    outs = mosaic_adapter(load_config(config_path), month, adapter)
    return {"written": sum(not o.skipped for o in outs), "up_to_date": sum(o.skipped for o in outs)}


@task(name="mosaic-catalog", retries=1)
def mosaic_catalog_task(config_path: str, month: str, adapters: list[str] | None = None) -> str:
    """Rewrite this month's STAC items, the collections and catalog.json; return catalog.json's path."""
    return update_catalog(load_config(config_path), month, adapters)
