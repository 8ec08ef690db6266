"""A prediction-store chunk overwritten with random bytes of the same size (so the block's chunk manifest,
which records names and sizes, still matches): mosaic's read fails to decode it, names the array and the
block, unpublishes the store instead of serving nodata, and the next infer run rewrites only that block,
byte-identical to the first run. Two chips, one block each, a deterministic stand-in model (no torch)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml

from nyceo import paths, versioned
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer import run_infer
from nyceo.infer.testing import SmoothStandIn, write_published_stack
from nyceo.mosaic.predstore import PredStoreError
from nyceo.mosaic.stage import mosaic_month
from tests.conftest import write_config

MONTH, ADAPTER = "2024-07", "buildings_nyc"


class StandIn(SmoothStandIn):
    def __init__(self, classes: list[str]) -> None:
        super().__init__(n_classes=len(classes), adapter_names=(ADAPTER,))
        self._classes = classes

    def classes(self, adapter: str) -> list[str]:
        return list(self._classes)


def chunk_hashes(store: Path) -> dict[str, str]:
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file() and "/c/" in str(p.relative_to(store)).replace("\\", "/")}


def test_undecodable_pred_chunk_is_named_unpublished_and_rebuilt(tmp_path):
    path = write_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["grid"]["block_size_chips"] = 1
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    classes = cfg.infer.adapters[ADAPTER].classes
    area = AreaGrid(220, 264, 1, 2, Lattice.from_config(cfg.grid))
    write_published_stack(cfg, MONTH, area, seed=5, encode_position=True)
    first = StandIn(classes)
    run_infer(cfg, MONTH, [ADAPTER], runner=first)
    final = paths.pred_store(cfg, MONTH, ADAPTER)
    key = versioned.published_key(final)
    store = Path(versioned.resolve(final))
    original = chunk_hashes(store)
    victim = store / "class_map" / "c" / "0" / "1"          # chip (0, 1): the second block
    assert victim.is_file()
    victim.write_bytes(os.urandom(victim.stat().st_size))

    with pytest.raises(PredStoreError) as err:
        mosaic_month(cfg, MONTH, [ADAPTER])
    msg = str(err.value)
    assert str(store) in msg and "class_map cannot be decoded" in msg and f"nyceo infer --month {MONTH} -a {ADAPTER}" in msg
    assert "b220_265" in msg                                 # the damaged block, not the other one
    assert "b220_264" not in msg
    assert versioned.published_key(final) is None             # not served, not even as nodata
    assert not list((Path(cfg.run.output_root) / MONTH / "cog").rglob("*.tif"))

    again = StandIn(classes)
    run_infer(cfg, MONTH, [ADAPTER], runner=again)
    assert versioned.published_key(final) == key
    assert 0 < again.calls < first.calls                     # only the damaged block was predicted again
    assert chunk_hashes(Path(versioned.resolve(final))) == original
