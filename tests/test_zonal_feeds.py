"""Heat-island feed (100 m grid), NDVI against values computed by hand, exposure on a hand-checkable case."""

from __future__ import annotations

import statistics

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
import zarr

from nyceo.boundaries import load_boroughs
from nyceo.paths import stack_store
from nyceo.zonal import stage
from nyceo.zonal.outputs import read_table, zonal_dir
from tests.zonal_helpers import MONTH, make_config, publish_pred, publish_stack, small_area


def _square_in_manhattan(cfg, size_m=1000.0):
    """A pixel-aligned square fully inside Manhattan and the small grid."""
    area = small_area(cfg)
    minx, miny, maxx, maxy = area.bounds
    man = load_boroughs().set_index("BoroName").loc["Manhattan"].geometry
    for x in np.arange(minx, maxx - size_m, 250.0):
        for y in np.arange(maxy - size_m, miny, -250.0):
            sq = shapely.box(x, y, x + size_m, y + size_m)
            if man.contains(sq):
                return sq
    raise AssertionError("no square found")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feeds")
    cfg0 = make_config(tmp)
    area = small_area(cfg0)
    sq = _square_in_manhattan(cfg0)
    # the hazard square, stored in EPSG:2263 (feet) like many NYC layers
    gpd.GeoDataFrame({"FLD_ZONE": ["AE"]}, geometry=[sq], crs="EPSG:32618").to_crs("EPSG:2263").to_file(tmp / "haz.gpkg")
    # population: a 2 km x 1 km tract whose west half is the square's west half... 1000 people
    west = shapely.box(sq.bounds[0] - 500, sq.bounds[1], sq.bounds[0] + 500, sq.bounds[3])
    gpd.GeoDataFrame({"pop": [1000]}, geometry=[west], crs="EPSG:32618").to_file(tmp / "pop.gpkg")
    cfg = make_config(tmp, hazards=[{"name": "flood", "path": str(tmp / "haz.gpkg"), "zone_column": "FLD_ZONE"}],
                      population={"path": str(tmp / "pop.gpkg"), "count_column": "pop"})
    # class maps: developed (1) west of the square's centre line, forest (2) east; buildings in the north 30 %
    y, x = area.coords()
    xx, yy = np.meshgrid(x, y)
    cx = (sq.bounds[0] + sq.bounds[2]) / 2
    lulc = np.where(xx < cx, 1, 2).astype(np.uint8)
    lulc[:, :5] = 3  # herbaceous strip at the west edge
    lulc[-3:, :] = 255  # an unmapped strip at the south edge
    bld = (yy > sq.bounds[3] - 300).astype(np.uint8)
    bprob = np.stack([254 - bld * 254, bld * 254]).astype(np.uint8)
    bprob[1][bld == 0] = 50  # p(building) = 50/254 outside the building rows
    bprob[0][bld == 0] = 204
    publish_pred(cfg, MONTH, "lulc_nyc", lulc)
    publish_pred(cfg, MONTH, "buildings_nyc", bld, bprob)
    publish_stack(cfg, MONTH)
    g = zarr.open_group(stack_store(cfg, MONTH), mode="r+")
    valid = np.asarray(g["s2_valid"][:])
    valid[2, :40, :40] = 0  # timestep 2 cloudy in the north-west corner
    valid[:, 100:110, 300:310] = 0  # no clear observation at all here
    g["s2_valid"][:] = valid
    result = stage.run(cfg, MONTH)
    return cfg, sq, lulc, result


def test_exposure_of_a_square_hazard_zone_over_a_known_raster(run):
    cfg, sq, _, result = run
    assert result["status"] == "done"
    t = read_table(cfg, MONTH, "exposure/flood_borough.csv")
    man = t[(t["unit_name"] == "Manhattan") & (t["hazard_zone"] == "AE")]
    assert len(t[t["adapter"] == "lulc_nyc"]) == 1, "the square lies in Manhattan only"
    lulc = man[man["adapter"] == "lulc_nyc"].iloc[0]
    bld = man[man["adapter"] == "buildings_nyc"].iloc[0]
    assert lulc["land_km2"] == pytest.approx(1.0, rel=1e-6)  # reprojected from feet: ~exact
    west_edge = max(sq.bounds[0], small_area(cfg).bounds[0] + 50)  # the herbaceous strip is not developed
    cx = (sq.bounds[0] + sq.bounds[2]) / 2
    assert lulc["developed_km2"] == pytest.approx((cx - west_edge) * 1000 / 1e6, abs=1e-4)
    assert np.isnan(lulc["building_km2"]) and np.isnan(bld["developed_km2"])
    assert bld["building_km2"] == pytest.approx(0.3, abs=1e-4)
    assert bld["building_p_km2"] == pytest.approx(0.3 + 0.7 * 50 / 254, abs=2e-4)
    assert lulc["population"] == pytest.approx(500.0, rel=1e-6)  # half the tract is inside
    nta = read_table(cfg, MONTH, "exposure/flood_nta.csv")
    nta_l = nta[nta["adapter"] == "lulc_nyc"]
    assert nta_l["land_km2"].sum() == pytest.approx(1.0, rel=1e-6)
    assert nta_l["developed_km2"].sum() == pytest.approx(lulc["developed_km2"], rel=1e-6)
    assert nta_l["population"].sum() == pytest.approx(500.0, rel=1e-6)
    assert nta_l["unit_id"].str.match(r"^MN\d{4}$").all()


def test_heat_grid_is_aligned_to_100_m_and_matches_hand_counts(run):
    cfg, _, lulc, _ = run
    area = small_area(cfg)
    from rio_cogeo.cogeo import cog_validate

    assert cog_validate(f"{zonal_dir(cfg, MONTH)}/heat/lulc_nyc_100m.tif")[0]
    with rasterio.open(f"{zonal_dir(cfg, MONTH)}/heat/lulc_nyc_100m.tif") as ds:
        assert ds.res == (100.0, 100.0) and ds.transform.c % 100 == 0 and ds.transform.f % 100 == 0
        assert ds.descriptions == ("impervious_share", "vegetation_share", "valid_fraction")
        imp, veg, valid = ds.read(1), ds.read(2), ds.read(3)
        for row, col in [(0, 0), (3, 17), (20, 40), (ds.height - 1, 5)]:
            x0, y1 = ds.transform @ (col, row)
            c0, r0 = int(round((x0 - area.bounds[0]) / 10)), int(round((area.bounds[3] - y1) / 10))
            px = lulc[max(r0, 0):max(r0 + 10, 0), max(c0, 0):max(c0 + 10, 0)]
            mapped = px[px != 255]
            assert valid[row, col] == pytest.approx(mapped.size / 100)
            if mapped.size:
                assert imp[row, col] == pytest.approx((mapped == 1).mean())
                assert veg[row, col] == pytest.approx(np.isin(mapped, [2, 3]).mean())
            else:
                assert np.isnan(imp[row, col])


def _ndvi_by_hand(s2, valid, band_names, y, x):
    b4, b8 = band_names.index("B04"), band_names.index("B08")
    vals = [(int(s2[t, b8, y, x]) - int(s2[t, b4, y, x])) / (int(s2[t, b8, y, x]) + int(s2[t, b4, y, x]))
            for t in range(s2.shape[0]) if valid[t, y, x] == 1]
    return statistics.median(vals) if vals else None


def test_ndvi_feed_against_values_computed_by_hand(run):
    cfg, *_ = run
    area = small_area(cfg)
    g = zarr.open_group(stack_store(cfg, MONTH), mode="r")
    bands = [str(b) for b in np.asarray(g["band"][:]).tolist()]
    s2, valid = np.asarray(g["s2"][:, :, :60, :60]), np.asarray(g["s2_valid"][:, :60, :60])
    with rasterio.open(f"{zonal_dir(cfg, MONTH)}/heat/ndvi_100m.tif") as ds:
        ndvi, frac = ds.read(1), ds.read(2)
        ox = int(round((area.bounds[0] - ds.transform.c) / 10))
        oy = int(round((ds.transform.f - area.bounds[3]) / 10))
        # cell (1, 1): pixels rows 10-oy.., cols 10-ox.. (all inside the first 60 px; part cloudy at t=2)
        r0, c0 = 10 - oy, 10 - ox
        hand = [_ndvi_by_hand(s2, valid, bands, y, x) for y in range(r0, r0 + 10) for x in range(c0, c0 + 10)]
        hand = [v for v in hand if v is not None]
        assert ndvi[1, 1] == pytest.approx(statistics.mean(hand), rel=1e-5)
        assert frac[1, 1] == pytest.approx(len(hand) / 100)
        assert (valid[2, r0:r0 + 10, c0:c0 + 10] == 0).any(), "the cell must include cloudy pixels"
        # the pixels without any clear observation leave their cell partly empty
        x0, y0 = area.bounds[0] + 3000, area.bounds[3] - 1000
        col, row = ~ds.transform @ (x0 + 50, y0 - 50)
        assert frac[int(row), int(col)] < 1.0
    t = read_table(cfg, MONTH, "heat/nta.csv")
    assert {"impervious_share", "vegetation_share", "ndvi_median_mean"} <= set(t.columns)
    assert t["ndvi_median_mean"].notna().sum() > 10 and t["ndvi_median_mean"].dropna().between(-1, 1).all()
    ndvi_nta = read_table(cfg, MONTH, "heat/ndvi_nta.csv")
    assert len(ndvi_nta) == 262 and pd.Series(ndvi_nta["ndvi_median_mean"]).dropna().between(-1, 1).all()
