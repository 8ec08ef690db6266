"""COG writer throughput against GDAL's COG driver on the same city-sized raster, same run.

Raster: 4928 x 4928 uint8 (22 x 22 chips of 224 px, the city's AreaGrid), seeded smooth class map
with 255 nodata outside an irregular "land" mask. Both sides use the same creation options
(BLOCKSIZE, COMPRESS, PREDICTOR, OVERVIEW_RESAMPLING=MODE).

- reference: ``rasterio.shutil.copy(src.tif, dst.tif, driver="COG", ...)`` — GDAL's COG driver
  CreateCopy from an uncompressed GeoTIFF on disk, i.e. what ``gdal_translate -of COG`` does
  (no gdal_translate binary or osgeo bindings are installed; rasterio bundles GDAL 3.10).
- ours: ``nyceo.mosaic.cog.write_cog`` from the numpy array (colour table, tags, scale/offset).

Prints MB/s of raw pixels (uint8 bytes / wall time), best of N, and the ratio (target >= 0.8).
Run: .venv/bin/python benchmarks/mosaic_bench.py [--repeats 5] [--compression ZSTD]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from scipy.ndimage import gaussian_filter, zoom

from nyceo.mosaic.cog import CogBand, class_colormap, cog_options, write_cog

SIZE_PX = 4928
TRANSFORM = Affine(10, 0, 573_440, 0, -10, 4_530_240)
COLORS = ["#1f78b4", "#e31a1c", "#33a02c", "#b2df8a", "#a6a6a6"]


def city_raster(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fields = [zoom(gaussian_filter(rng.normal(size=(155, 155)), 1.5), 32, order=1)[:SIZE_PX, :SIZE_PX]
              for _ in range(len(COLORS))]
    data = np.argmax(np.stack(fields), axis=0).astype(np.uint8)
    land = zoom(gaussian_filter(rng.normal(size=(78, 78)), 3), 64, order=1)[:SIZE_PX, :SIZE_PX] > -0.05
    data[~land] = 255
    return data


def best_of_interleaved(fns: list, repeats: int) -> list[float]:
    """Best wall time of each function, runs interleaved so load on a shared machine hits both alike."""
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [min(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compression", default="ZSTD", choices=["ZSTD", "DEFLATE", "LZW"])
    ap.add_argument("--blocksize", type=int, default=512)
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    data = city_raster()
    mb = data.nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "src.tif")
        with rasterio.open(src, "w", driver="GTiff", width=SIZE_PX, height=SIZE_PX, count=1, dtype="uint8",
                           crs="EPSG:32618", transform=TRANSFORM, nodata=255) as ds:
            ds.write(data, 1)
            ds.write_colormap(1, class_colormap(COLORS))
        opts = cog_options(args.blocksize, args.compression, "mode")

        def reference() -> None:
            with rasterio.open(src) as s:
                rasterio.shutil.copy(s, Path(tmp, "ref.tif"), driver="COG", **opts)

        band = CogBand("class", "mode", colormap=class_colormap(COLORS))

        def ours() -> None:
            write_cog(data, TRANSFORM, "EPSG:32618", Path(tmp, "ours.tif"), band,
                      blocksize_px=args.blocksize, compression=args.compression, tags={"NYCEO_INPUT_KEY": "x"})

        ours(), reference()  # warm-up (GDAL driver load, page cache)
        t_ref, t_ours = best_of_interleaved([reference, ours], args.repeats)
        size_ref, size_ours = Path(tmp, "ref.tif").stat().st_size, Path(tmp, "ours.tif").stat().st_size
    print(f"raster {SIZE_PX} x {SIZE_PX} uint8 = {mb:.1f} MB raw; {args.compression}, block {args.blocksize}, "
          f"overviews MODE; best of {args.repeats} (interleaved); GDAL {rasterio.__gdal_version__}")
    print(f"reference  GDAL COG driver (rasterio.shutil.copy = gdal_translate -of COG): "
          f"{t_ref:.3f} s  {mb / t_ref:7.1f} MB/s  file {size_ref / 1e6:.2f} MB")
    print(f"nyceo      write_cog (numpy -> /vsimem GTiff -> COG driver):              "
          f"{t_ours:.3f} s  {mb / t_ours:7.1f} MB/s  file {size_ours / 1e6:.2f} MB")
    print(f"ratio ours/reference throughput: {t_ref / t_ours:.2f} (target >= 0.8)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "mb": mb, "ours_s": t_ours, "reference_s": t_ref, "ratio": t_ref / t_ours, "ours_file_bytes": size_ours,
            "reference_file_bytes": size_ref, "repeats": args.repeats, "compression": args.compression}, indent=1))


if __name__ == "__main__":
    main()
