"""NYC borough and 2020 Neighborhood Tabulation Area boundaries, vendored in ``catalogs/data``.

Source: NYC Department of City Planning, release 24C (public domain); see catalogs/data/SOURCES.md.
Stored as GeoParquet in EPSG:2263 exactly as published; loaded in the grid CRS.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import geopandas as gpd

DATA_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "data"
BOROUGHS_FILE = DATA_DIR / "nyc_boroughs_dcp24c.parquet"
NTAS_FILE = DATA_DIR / "nyc_nta2020_dcp24c.parquet"


@lru_cache(maxsize=8)
def _read(path: Path) -> gpd.GeoDataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"boundary file {path} is missing; it ships with the repository under catalogs/data "
            "(re-checkout, or rebuild it with `python -m catalogs.vendor_boundaries`)"
        )
    return gpd.read_parquet(path)


def load_boroughs(crs: str = "EPSG:32618") -> gpd.GeoDataFrame:
    """The five boroughs (BoroCode, BoroName, geometry) in ``crs``."""
    gdf = _read(BOROUGHS_FILE)[["BoroCode", "BoroName", "geometry"]]
    return gdf.to_crs(crs).sort_values("BoroCode").reset_index(drop=True)


def load_ntas(crs: str = "EPSG:32618") -> gpd.GeoDataFrame:
    """The 262 2020 Neighborhood Tabulation Areas in ``crs``."""
    cols = ["NTA2020", "NTAName", "NTAType", "BoroCode", "BoroName", "CDTA2020", "geometry"]
    return _read(NTAS_FILE)[cols].to_crs(crs).sort_values("NTA2020").reset_index(drop=True)
