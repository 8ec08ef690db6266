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
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.io import join, write_bytes_atomic

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
    return Path(f"{dest_stem}.parquet").is_file() and Path(f"{dest_stem}.csv").is_file()


def read_table(config: PipelineConfig, month: str, rel: str) -> pd.DataFrame | None:
    """A published zonal table (relative to ``<month>/zonal``, e.g. 'lulc_nyc/borough.csv'), or None."""
    path = Path(zonal_dir(config, month)) / rel
    if not path.is_file():
        return None
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def remove_other_versions(final: str, key: str) -> list[str]:
    """Remove ``<final>@<key16>`` folders of other keys beside a published suffix-less folder.

    ``nyceo.versioned.versions`` only recognises names with a suffix (``name@key.zarr``), so its
    ``publish`` leaves old versions of ``zonal@...`` / ``report@...`` behind; local outputs only."""
    import re
    import shutil

    parent, name = Path(final).parent, Path(final).name
    keep = f"{name}@{key[:16]}"
    removed = []
    for entry in parent.glob(f"{name}@*") if parent.is_dir() else []:
        if re.fullmatch(rf"{re.escape(name)}@[0-9a-f]{{16}}", entry.name) and entry.name != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def read_manifest(config: PipelineConfig, month: str) -> dict[str, Any] | None:
    path = Path(zonal_dir(config, month)) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
