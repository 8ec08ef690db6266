"""Planted changes of the embedded city (catalogs/embedded/changes.py)."""

from __future__ import annotations

import numpy as np

from catalogs.embedded import changes
from catalogs.embedded.landscape import DEVELOPED, OTHER, CityGrid, build_landscape

# a 6 km x 4 km piece of Staten Island around the Freshkills cluster
GRID = CityGrid(565_560.0, 4_489_920.0, 571_560.0, 4_493_880.0)


def test_months_fingerprints_and_the_surface_of_a_planted_cluster():
    assert changes.active(2024, 6) == [] and changes.fingerprint(2024, 6) == {}
    july = {c.name for c in changes.active(2024, 7)}
    aug = {c.name for c in changes.active(2024, 8)}
    assert "marine-park-yard" in july and "marine-park-yard" not in aug  # the yard reverts
    assert "forest-park-houses" in aug - july and "freshkills-houses" in july & aug
    assert changes.fingerprint(2024, 7)["planted"] == sorted(july, key=[c.name for c in changes.PLANTED].index)
    land = build_landscape(GRID, 7)
    assert changes.apply(land, 2024, 6) is land
    after = changes.apply(land, 2024, 7)
    diff = (after.landcover != land.landcover) | (after.building != land.building)
    assert 0.8 * 40 * 30 <= diff.sum() <= 40 * 30  # the 400 m x 300 m cluster (land pixels only)
    rows, cols = np.nonzero(diff)
    win = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    assert (after.landcover[win][after.landcover[win] != 0] == DEVELOPED).all()
    assert 0.5 < after.building[win].mean() < 0.6  # 3x3 roofs on a 4 px pitch = 9/16
    assert (after.code(20) != land.code(20)).any()  # 20 / 60 m bands see it too
    assert (after.codes[10] % 16 == land.codes[10] % 16).all()  # texture unchanged: only the surface changed
    assert OTHER not in np.unique(after.landcover[win])
