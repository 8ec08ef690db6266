"""The real TerraMesh chip (EPSG:32632, int16 optical, radar in dB, unsnapped origin) through the
acquisition reader, as a static STAC item, onto the EPSG:32618 lattice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from catalogs.static import item_from_files
from nyceo.acquire import harmonize as hz
from nyceo.acquire.block import _s1_in_db
from nyceo.acquire.load import GridSpec, read_date
from nyceo.config import S2_BANDS
from nyceo.grid import Lattice
from tests.conftest import TEST_DATA

CHIP = "terramesh_637U_59R_1_3"
WHEN = dt.datetime(2017, 10, 30, 10, 33, tzinfo=dt.timezone.utc)


def band_vrt(src: Path, band: int, dest: Path) -> Path:
    """A one-band VRT over band ``band`` of a multi-band file (STAC assets are one band each)."""
    with rasterio.open(src) as ds:
        dtype = {"int16": "Int16", "float64": "Float64"}[ds.dtypes[0]]
        gt = ", ".join(repr(v) for v in ds.transform.to_gdal())
        dest.write_text(
            f'<VRTDataset rasterXSize="{ds.width}" rasterYSize="{ds.height}"><SRS>{ds.crs.to_wkt()}</SRS>'
            f"<GeoTransform>{gt}</GeoTransform><VRTRasterBand dataType=\"{dtype}\" band=\"1\"><SimpleSource>"
            f'<SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{band}</SourceBand>'
            "</SimpleSource></VRTRasterBand></VRTDataset>"
        )
    return dest


def lattice_spec(path: Path) -> GridSpec:
    """Lattice-aligned EPSG:32618 bounds (whole chips) around the file's footprint."""
    with rasterio.open(path) as ds:
        bounds = rasterio.warp.transform_bounds(ds.crs, "EPSG:32618", *ds.bounds, densify_pts=21)
    lat = Lattice(0.0, 5_017_600.0, 224, 10.0)
    r0, c0, r1, c1 = lat.chip_range(bounds)
    minx, _, _, maxy = lat.chip_bounds(r0, c0)
    _, miny, maxx, _ = lat.chip_bounds(r1, c1)
    return GridSpec(32618, 10.0, (minx, miny, maxx, maxy))


def reference(path: Path, band: int, spec: GridSpec, resampling: Resampling) -> np.ma.MaskedArray:
    """GDAL's own warp of the file onto the same grid (the reference)."""
    h, w = spec.shape
    transform = rasterio.transform.from_bounds(*spec.bounds, w, h)
    with rasterio.open(path) as src, WarpedVRT(src, crs="EPSG:32618", transform=transform, width=w, height=h,
                                               resampling=resampling, add_alpha=True) as vrt:
        data = vrt.read(band)
        alpha = vrt.read(vrt.count)
    return np.ma.masked_array(data, mask=alpha == 0)


def test_real_chip_survives_the_reader(tmp_path):
    s2_file = TEST_DATA / f"{CHIP}_s2l2a.tif"
    s1_file = TEST_DATA / f"{CHIP}_s1rtc.tif"
    s2 = item_from_files(f"{CHIP}_s2", "sentinel-2-l2a", WHEN,
                         {b: band_vrt(s2_file, i + 1, tmp_path / f"{b}.vrt") for i, b in enumerate(S2_BANDS)})
    db = {"raster:bands": [{"data_type": "float64", "unit": "dB"}]}
    s1 = item_from_files(f"{CHIP}_s1", "sentinel-1-rtc", WHEN,
                         {p: band_vrt(s1_file, i + 1, tmp_path / f"{p}.vrt") for i, p in enumerate(["vv", "vh"])},
                         asset_fields={"vv": db, "vh": db})
    spec = lattice_spec(s2_file)
    assert spec.shape == (672, 448)  # the footprint needs 3 x 2 lattice chips in UTM 18N
    # Optical, bilinear, as acquisition reads it: equals GDAL's warp of the original file, on
    # exactly GDAL's footprint. The chip holds no 0 DN (0 is the fill value), so every output pixel
    # the warp covers (70,680 of the 672 x 448: the 224 x 224 chip, rotated and stretched into UTM
    # 18N) must carry data, and none outside it. Values: at most 1 DN (half-way ties), 0 measured.
    dn = read_date([s2], list(S2_BANDS), spec, resampling=Resampling.bilinear, dtype=np.uint16, fill_value=0)
    for b in range(len(S2_BANDS)):
        ref = reference(s2_file, b + 1, spec, Resampling.bilinear)
        assert (~ref.mask).sum() == 70_680
        np.testing.assert_array_equal(dn[b] != 0, ~ref.mask)   # no missing pixel, no garbage outside
        assert np.abs(dn[b][~ref.mask].astype(int) - ref.data[~ref.mask].astype(int)).max() <= 1
    # A 2017 scene has no baseline offset: harmonization keeps the digital numbers.
    assert not hz.needs_offset(s2, "2022-01-25")
    assert np.array_equal(hz.harmonize_s2(dn, 0)[3][dn[3] != 0], dn[3][dn[3] != 0].astype(np.int16))
    # Georeferencing: nearest read -> the source pixel under each output pixel centre.
    near = read_date([s2], ["B04"], spec, resampling=Resampling.nearest, dtype=np.uint16, fill_value=0)[0]
    with rasterio.open(s2_file) as src:
        b04, inv = src.read(4), ~src.transform
    minx, _, _, maxy = spec.bounds
    yy, xx = np.mgrid[0:spec.shape[0], 0:spec.shape[1]]
    x, y = minx + 10 * (xx + 0.5), maxy - 10 * (yy + 0.5)
    sx, sy = Transformer.from_crs("EPSG:32618", "EPSG:32632", always_xy=True).transform(x, y)
    col, row = inv * (sx, sy)
    # Every output pixel whose centre falls inside a source pixel, at least 0.05 px from its edges
    # (57,244 of the 70,678 inside; nearer the edges float rounding may pick the neighbour).
    inside = (col >= 0) & (row >= 0) & (col < 224) & (row < 224)
    safe = inside & (np.abs(col % 1 - 0.5) < 0.45) & (np.abs(row % 1 - 0.5) < 0.45)
    assert safe.sum() > 55_000
    np.testing.assert_array_equal(near[safe], b04[row[safe].astype(int), col[safe].astype(int)])
    # Radar already in dB (declared by raster:bands unit) stays in dB, values as GDAL warps them.
    assert _s1_in_db(s1, "vv")
    vv = read_date([s1], ["vv", "vh"], spec, resampling=Resampling.bilinear, dtype=np.float32, fill_value=np.nan)
    ref = reference(s1_file, 1, spec, Resampling.bilinear)
    np.testing.assert_array_equal(np.isfinite(vv[0]), ~ref.mask)   # same footprint, no hole
    np.testing.assert_allclose(vv[0][~ref.mask], ref.data[~ref.mask], rtol=0, atol=1e-5)
    assert -40 < np.nanmin(vv) and np.nanmax(vv) < 10  # dB range, not linear power
