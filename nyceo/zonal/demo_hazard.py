"""The demo's illustrative hazard layer: land within 150 m and 150-300 m of the city's outer boundary.

ILLUSTRATIVE ONLY - not a flood map. Derived from the DCP 24C borough boundaries (clipped to the
shoreline) that ship in catalogs/data: the outer boundary of the five boroughs' union is mostly
shoreline, but it also follows the land borders with Nassau and Westchester counties, which are
not shoreline. Real hazard layers (FEMA flood zones, the Sandy inundation zone, DEP stormwater
flood scenarios) are configuration (``zonal.hazards``). Rebuild with
``python -m nyceo.zonal.demo_hazard`` (writes catalogs/data/nyc_shoreline_300m_illustrative.parquet).
"""

from __future__ import annotations

import io

import geopandas as gpd
import shapely

from nyceo.boundaries import DATA_DIR, load_boroughs
from nyceo.io import write_bytes_atomic

DEMO_HAZARD_FILE = DATA_DIR / "nyc_shoreline_300m_illustrative.parquet"
LABEL = ("ILLUSTRATIVE, not a flood map: land within 150 m / 150-300 m of the city's outer boundary "
         "(DCP 24C boroughs; includes the Nassau/Westchester land borders)")


def shoreline_zones(widths_m: tuple[float, ...] = (150.0, 300.0), crs: str = "EPSG:32618") -> gpd.GeoDataFrame:
    """Bands of land between successive distances from the city's outer boundary (zone: '0-150 m', ...)."""
    land = shapely.union_all(load_boroughs(crs).geometry.values)
    edge = land.boundary
    zones, inner = [], 0.0
    for w in widths_m:
        band = shapely.intersection(land, shapely.difference(edge.buffer(w), edge.buffer(inner)) if inner else edge.buffer(w))
        zones.append((f"{inner:g}-{w:g} m", shapely.simplify(band, 2.0)))
        inner = w
    gdf = gpd.GeoDataFrame({"zone": [z for z, _ in zones], "note": LABEL}, geometry=[g for _, g in zones], crs=crs)
    return gdf.to_crs("EPSG:4326")


def write_demo_hazard() -> str:
    buf = io.BytesIO()
    shoreline_zones().to_parquet(buf, schema_version="1.1.0", compression="zstd")
    write_bytes_atomic(str(DEMO_HAZARD_FILE), buf.getvalue())
    return str(DEMO_HAZARD_FILE)


if __name__ == "__main__":  # pragma: no cover
    print(write_demo_hazard())
