"""Rebuild catalogs/data/*.parquet from the DCP shapefiles (../shared/data by default).

    python -m catalogs.vendor_boundaries [SOURCE_DIR]
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd

from nyceo.boundaries import BOROUGHS_FILE, NTAS_FILE


def main(source_dir: str = "../shared/data") -> None:
    src = Path(source_dir)
    for name, dest in (("nyc_boroughs_dcp24c", BOROUGHS_FILE), ("nyc_nta2020_dcp24c", NTAS_FILE)):
        gdf = gpd.read_file(src / f"{name}.shp")
        if not gdf.is_valid.all():
            raise ValueError(f"{name}: invalid geometries in the source shapefile")
        tmp = dest.with_suffix(".parquet.tmp")
        gdf.to_parquet(tmp, compression="zstd")
        tmp.replace(dest)
        print(f"{dest}: {len(gdf)} features, {gdf.crs}")


if __name__ == "__main__":
    main(*sys.argv[1:])
