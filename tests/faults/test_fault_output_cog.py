"""A published output COG truncated or overwritten by hand between runs (Manhattan, seeded prediction
store): the next mosaic run detects it (every tile of a local COG is decoded when checking whether an
area is current; the key tag in the header alone survived the damage) and rewrites that area: a valid
COG with the same pixels as before."""

from __future__ import annotations


import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from nyceo.mosaic.stage import mosaic_area
from tests.test_mosaic_helpers import mosaic_manhattan

MONTH = "2024-07"


@pytest.fixture()
def published(tmp_path):
    cfg, _, files = mosaic_manhattan(tmp_path, MONTH)
    with rasterio.open(files["class"]) as ds:
        pixels = ds.read(1)
    return cfg, files, pixels


@pytest.mark.parametrize("damage", ["truncated", "tail_overwritten"])
def test_damaged_output_cog_is_detected_and_rewritten(published, damage):
    cfg, files, pixels = published
    cls = files["class"]
    data = cls.read_bytes()
    if damage == "truncated":
        cls.write_bytes(data[: len(data) // 2])          # the header (and its key tag) survive
    else:
        cls.write_bytes(data[:-4096] + b"\x00" * 4096)   # same size, last tiles zeroed
    again = mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan")
    assert not again.skipped
    assert cog_validate(str(cls))[0]
    with rasterio.open(cls) as ds:
        assert np.array_equal(ds.read(1), pixels)
    assert mosaic_area(cfg, MONTH, "buildings_nyc", "manhattan").skipped   # and now it is current again
