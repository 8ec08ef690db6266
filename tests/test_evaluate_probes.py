"""Sniff probes: places on the grid (point + radius, NTA), rules, pass / fail / no_data."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from nyceo.boundaries import load_ntas
from nyceo.evaluate.probes import Probe, evaluate_probe, load_probes, probe_mask
from nyceo.grid import AreaGrid, Lattice
from tests.conftest import REPO
from tests.evaluate_fixtures import write_probes

LAT = Lattice(0.0, 5_017_600.0, 224, 10.0)
CP_AREA = AreaGrid(223, 261, 3, 3, LAT)  # 3 x 3 chips around Central Park
LULC = ["water", "developed", "forest", "herbaceous", "other"]


def probe(**kw) -> Probe:
    return Probe.model_validate({"name": "p", "rule": {"classes": ["forest", "herbaceous"], "min_share": 0.5}, **kw})


def test_the_repository_probes_file_names_the_six_places():
    names = [p.name for p in load_probes(str(REPO / "configs/probes_nyc.yaml"))]
    for place in ("Central Park", "Jamaica Bay", "Midtown", "JFK", "Pelham Bay Park", "Staten Island Greenbelt"):
        assert any(place in n for n in names), place


def test_nta_place_by_pixel_centre():
    m = probe_mask(probe(nta="MN6491"), CP_AREA, "EPSG:32618")
    park = load_ntas("EPSG:32618").set_index("NTA2020").geometry["MN6491"]
    # pixel-centre count ~ area / 100 m2 (Central Park is ~3.4 km2); every marked centre lies inside
    assert m.sum() == pytest.approx(park.area / 100, rel=0.01) and 3.0e6 < park.area < 3.6e6
    y, x = CP_AREA.coords()
    import shapely

    iy, ix = np.nonzero(m)
    pts = shapely.points(x[ix], y[iy])
    assert shapely.contains(park, pts).all()


def test_point_and_radius_place():
    lon, lat = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True).transform(587_605.0, 4_513_605.0)
    m = probe_mask(probe(point_lonlat=(lon, lat), radius_m=55), CP_AREA, "EPSG:32618")
    # the point is a pixel centre; other centres are at (10 i, 10 j) m from it. Within 55 m (no centre
    # lies within 1 m of the circle, so the polygonized circle decides nothing): i^2 + j^2 <= 30.25,
    # 97 pixels (the 81 within 50 m plus 16 at 51.0 and 53.9 m)
    by_hand = sum(1 for i in range(-6, 7) for j in range(-6, 7) if i * i + j * j <= 30.25)
    assert m.sum() == by_hand == 97
    y, x = CP_AREA.coords()
    iy, ix = np.nonzero(m)
    assert np.hypot(x[ix] - 587_605.0, y[iy] - 4_513_605.0).max() == pytest.approx(53.85, abs=0.01)


def test_rules_pass_fail_and_no_data():
    mask = np.zeros((4, 5), dtype=bool)
    mask[:2] = True  # 10 pixels
    cm = np.full((4, 5), 1, dtype=np.uint8)  # developed
    cm[0, :5] = 2  # 5 forest
    cm[1, 0] = 255  # one map nodata -> 9 valid, 5 forest
    ref = np.full((4, 5), 2, dtype=np.uint8)
    r = evaluate_probe(probe(nta="MN6491"), mask, cm, LULC, ref)
    assert r["state"] == "pass" and r["share"] == pytest.approx(5 / 9) and r["valid_px"] == 9
    assert r["reference_share"] == 1.0 and r["place_px"] == 10
    strict = Probe.model_validate({"name": "q", "nta": "MN6491", "rule": {"classes": ["forest"], "min_share": 0.6}})
    assert evaluate_probe(strict, mask, cm, LULC)["state"] == "fail"
    cap = Probe.model_validate({"name": "c", "nta": "X", "rule": {"classes": ["developed"], "max_share": 4 / 9}})
    assert evaluate_probe(cap, mask, cm, LULC)["state"] == "pass"  # exactly at the bound passes
    assert evaluate_probe(strict, np.zeros_like(mask), cm, LULC)["state"] == "no_data"
    with pytest.raises(ValueError, match=r"tests classes \['building'\] that the adapter lacks"):
        evaluate_probe(Probe.model_validate({"name": "b", "nta": "X", "rule": {"classes": ["building"], "max_share": 0.1}}),
                       mask, cm, LULC)


def test_bad_probes_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="needs exactly one of point_lonlat"):
        load_probes(str(write_probes(tmp_path / "a.yaml", [
            {"name": "both", "nta": "MN6491", "point_lonlat": [-73.9, 40.7], "radius_m": 10,
             "rule": {"classes": ["forest"], "min_share": 0.5}}])))
    with pytest.raises(ValueError, match="a rule needs min_share and/or max_share"):
        load_probes(str(write_probes(tmp_path / "b.yaml", [{"name": "r", "nta": "MN6491", "rule": {"classes": ["forest"]}}])))
    with pytest.raises(ValueError, match="NTA code 'ZZ9999' is not among the 2020 NTAs"):
        probe_mask(probe(nta="ZZ9999"), CP_AREA, "EPSG:32618")
    with pytest.raises(FileNotFoundError, match="evaluate.probes_file"):
        load_probes(str(tmp_path / "missing.yaml"))
