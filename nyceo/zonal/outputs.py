"""Where the zonal stage writes, and how tables are written (GeoParquet + CSV, atomic, with provenance).

Layout, under ``<output_root>/<YYYY-MM>/zonal/`` (a versioned folder ``zonal@<key16>`` published by
:mod:`nyceo.versioned`: a rebuild never touches the published tables until it is complete)::

    zonal.json                               manifest: key, provenance, files, repaired feature ids
    <adapter>/<layer>.parquet|.csv           class areas and shares per zone (borough, nta, user layers)
    heat/<adapter>_100m.tif                  impervious_share, vegetation_share, valid_fraction (float32 COG)
    heat/ndvi_100m.tif                       ndvi (mean of per-pixel clear-sky medians), clear_fraction
    heat/nta.parquet|.csv                    per NTA x adapter: impervious / vegetation share, NDVI
    stormwater/<adapter>_<layer>.parquet|.csv  impervious area and share per zone (+ category)
    stormwater/<adapter>_by_category.csv     impervious area per layer x category (e.g. combined sewer)
    exposure/<hazard>.parquet|.csv           hazard zone x borough / NTA: land, developed, building, people
"""

from __future__ import annotations

import io
import json
from typing import Any

import geopandas as gpd
import pandas as pd

from nyceo import paths, versioned
from nyceo.config import PipelineConfig
from nyceo.io import join, write_bytes_atomic
from nyceo.zonal import remote

MANIFEST = "zonal.json"


def zonal_dir(config: PipelineConfig, month: str) -> str:
    return join(paths.month_dir(config, month), "zonal")


def cache_dir(config: PipelineConfig) -> str:
    return config.zonal.coverage_cache or join(config.run.output_root, "zonal_cache")


def write_table(frame: pd.DataFrame, dest_stem: str, meta: dict[str, Any]) -> list[str]:
    """``<stem>.parquet`` (GeoParquet when ``frame`` has geometry) and ``<stem>.csv`` (no geometry); atomic."""
    buf = io.BytesIO()
    if isinstance(frame, gpd.GeoDataFrame):
        frame.attrs["nyceo"] = json.dumps(meta, sort_keys=True, default=str)
        frame.to_parquet(buf, schema_version="1.1.0", compression="zstd")
        flat = pd.DataFrame(frame.drop(columns=frame.geometry.name))
    else:
        frame.attrs["nyceo"] = json.dumps(meta, sort_keys=True, default=str)
        frame.to_parquet(buf, compression="zstd")
        flat = frame
    write_bytes_atomic(f"{dest_stem}.parquet", buf.getvalue())
    write_bytes_atomic(f"{dest_stem}.csv", flat.to_csv(index=False, float_format="%.10g").encode())
    return [f"{dest_stem}.parquet", f"{dest_stem}.csv"]


def done(dest_stem: str) -> bool:
    """Whether both files of a table exist (inside a key-named build folder, so they are this key's)."""
    return remote.exists(f"{dest_stem}.parquet") and remote.exists(f"{dest_stem}.csv")


def published_file(config: PipelineConfig, month: str, rel: str) -> str | None:
    """Path (or URL) of ``rel`` inside the month's published zonal folder, or None when nothing is published.

    Through the pointer (:func:`nyceo.versioned.resolve`): object stores have no symlink."""
    base = versioned.resolve(zonal_dir(config, month))
    return join(base, *rel.split("/")) if base else None


def read_table(config: PipelineConfig, month: str, rel: str) -> pd.DataFrame | None:
    """A published zonal table (relative to ``<month>/zonal``, e.g. 'lulc_nyc/borough.csv'), or None."""
    path = published_file(config, month, rel)
    data = remote.read_bytes_or_none(path) if path else None
    if data is None:
        return None
    return pd.read_csv(io.BytesIO(data)) if path.endswith(".csv") else pd.read_parquet(io.BytesIO(data))


def read_manifest(config: PipelineConfig, month: str) -> dict[str, Any] | None:
    path = published_file(config, month, MANIFEST)
    data = remote.read_bytes_or_none(path) if path else None
    try:
        return json.loads(data) if data is not None else None
    except json.JSONDecodeError:
        return None
