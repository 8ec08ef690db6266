import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from nyceo.boundaries import load_boroughs, load_ntas
from nyceo.config import GridConfig
from nyceo.grid import (
    AreaGrid, Lattice, blocks_for_chips, build_grid, chip_id, counts_per_borough, parse_chip_id,
)

CITY = GridConfig()
LAT = Lattice.from_config(CITY)


@pytest.fixture(scope="module")
def boroughs():
    return load_boroughs("EPSG:32618")


@pytest.fixture(scope="module")
def city_chips(boroughs):
    return build_grid(CITY, boroughs)


def fake_area(*polys, crs="EPSG:32618"):
    return gpd.GeoDataFrame(
        {"BoroCode": list(range(1, len(polys) + 1)), "BoroName": [f"A{i}" for i in range(len(polys))]},
        geometry=list(polys), crs=crs,
    )


def test_boundaries_load_in_utm(boroughs):
    assert boroughs.crs.to_epsg() == 32618
    assert sorted(boroughs["BoroName"]) == ["Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"]
    land_km2 = boroughs.area.sum() / 1e6
    assert 770 < land_km2 < 800  # ~785 km² of land (DCP, clipped to shoreline)
    ntas = load_ntas()
    assert len(ntas) == 262 and ntas.crs.to_epsg() == 32618 and ntas.is_valid.all()


def test_chips_cover_every_borough_completely(boroughs, city_chips):
    cover = shapely.union_all(city_chips.geometry.values)
    for name, geom in zip(boroughs["BoroName"], boroughs.geometry):
        uncovered = geom.difference(cover).area
        assert uncovered < 1e-3, f"{name}: {uncovered} m² not covered by chips"


def test_no_duplicate_ids_and_ids_match_geometry(city_chips):
    assert city_chips["chip_id"].is_unique
    for cid, geom in zip(city_chips["chip_id"], city_chips.geometry):
        row, col = parse_chip_id(cid)
        assert geom.bounds == pytest.approx(LAT.chip_bounds(row, col))
        assert geom.area == pytest.approx(2240.0**2)


def test_city_count_matches_lattice_arithmetic(boroughs, city_chips):
    minx, miny, maxx, maxy = boroughs.total_bounds
    n_cols = math.floor(maxx / 2240) - math.floor(minx / 2240) + 1
    n_rows = math.floor((5_017_600 - miny) / 2240) - math.floor((5_017_600 - maxy) / 2240) + 1
    assert n_rows * n_cols == 484  # the city bbox, as in REFERENCE §5
    assert len(city_chips) <= n_rows * n_cols
    # every chip of the bbox that is not in the grid really holds no land
    land = shapely.union_all(boroughs.geometry.values)
    r0, c0, r1, c1 = LAT.chip_range(tuple(boroughs.total_bounds))
    kept = set(city_chips["chip_id"])
    for r in range(r0, r1 + 1):
        for c in range(c0, c1 + 1):
            has_land = shapely.box(*LAT.chip_bounds(r, c)).intersection(land).area > 0
            assert has_land == (chip_id(r, c) in kept)


def test_same_point_same_id_for_one_borough_or_whole_city(boroughs, city_chips):
    one = build_grid(CITY.model_copy(update={"boroughs": ["Manhattan"]}), boroughs)
    assert set(one["chip_id"]) <= set(city_chips["chip_id"])
    manhattan = boroughs.loc[boroughs["BoroName"] == "Manhattan"].geometry.iloc[0]
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = manhattan.bounds
    pts = [shapely.Point(x, y) for x, y in zip(rng.uniform(minx, maxx, 400), rng.uniform(miny, maxy, 400))]
    pts = [p for p in pts if manhattan.contains(p)]
    assert len(pts) > 50
    for p in pts:
        a = one[one.contains(p)]["chip_id"].tolist()
        b = city_chips[city_chips.contains(p)]["chip_id"].tolist()
        assert a == b and len(a) == 1
        assert a[0] == chip_id(*LAT.chip_of_point(p.x, p.y))


def test_min_land_fraction_drops_mostly_water_chips(boroughs, city_chips):
    strict = build_grid(CITY.model_copy(update={"min_land_fraction": 0.5}), boroughs)
    assert 0 < len(strict) < len(city_chips)
    assert (strict["land_fraction"] >= 0.5).all()
    expected = set(city_chips.loc[city_chips["land_fraction"] >= 0.5, "chip_id"])
    assert set(strict["chip_id"]) == expected


def test_counts_per_borough(city_chips):
    counts = counts_per_borough(city_chips)
    assert set(counts) == {"Bronx", "Brooklyn", "Manhattan", "Queens", "Staten Island"}
    assert sum(counts.values()) >= len(city_chips)  # chips on a borough line count twice


def test_unknown_borough_is_a_clear_error(boroughs):
    with pytest.raises(ValueError, match="Manhatan"):
        build_grid(CITY.model_copy(update={"boroughs": ["Manhatan"]}), boroughs)


def test_wrong_crs_is_a_clear_error(boroughs):
    with pytest.raises(ValueError, match="reproject"):
        build_grid(CITY, boroughs.to_crs("EPSG:4326"))


@settings(max_examples=60, deadline=None)
@given(
    col=st.integers(240, 280), row=st.integers(200, 250),
    w=st.integers(1, 5), h=st.integers(1, 5),
    dx=st.integers(0, 223_900).map(lambda cm: cm / 100), dy=st.integers(0, 223_900).map(lambda cm: cm / 100),
)
def test_rectangle_chip_count_matches_arithmetic(col, row, w, h, dx, dy):
    """A rectangle w×h chips large, shifted by (dx, dy) m, touches exactly the expected cells."""
    minx = col * 2240 + dx
    maxy = 5_017_600 - row * 2240 - dy
    rect = shapely.box(minx, maxy - h * 2240, minx + w * 2240, maxy)
    chips = build_grid(GridConfig(boroughs=["A0"]), fake_area(rect))
    exp_cols = w + (1 if dx > 0 else 0)
    exp_rows = h + (1 if dy > 0 else 0)
    assert len(chips) == exp_rows * exp_cols
    assert chips["chip_id"].is_unique
    assert chips["land_fraction"].sum() * 2240**2 == pytest.approx(rect.area, rel=1e-9)
    assert chips["row"].min() == row and chips["col"].min() == col


@settings(max_examples=100, deadline=None)
@given(x=st.floats(300_000, 800_000), y=st.floats(4_300_000, 4_700_000))
def test_point_lies_in_its_chip(x, y):
    r, c = LAT.chip_of_point(x, y)
    minx, miny, maxx, maxy = LAT.chip_bounds(r, c)
    assert minx <= x < maxx and miny < y <= maxy


def test_area_grid_and_blocks(city_chips):
    area = AreaGrid.from_chips(city_chips, LAT)
    assert (area.height_px, area.width_px) == (22 * 224, 22 * 224)
    y, x = area.coords()
    assert x[0] == area.bounds[0] + 5 and y[0] == area.bounds[3] - 5
    assert area.transform.a == 10 and area.transform.e == -10
    sy, sx = area.chip_slices(area.row0, area.col0)
    assert (sy.start, sx.start, sy.stop) == (0, 0, 224)
    blocks = blocks_for_chips(city_chips, 8)
    ids = [cid for b in blocks for cid in b.chip_ids]
    assert sorted(ids) == sorted(city_chips["chip_id"]) and len(ids) == len(set(ids))
    for b in blocks:
        rows = {parse_chip_id(c)[0] // 8 for c in b.chip_ids}
        assert rows == {b.brow}
