"""The spatial split: blocks by hash, a buffer between splits, stable across months and chip sets."""

from __future__ import annotations

import pytest

from nyceo.config import TrainSplitConfig
from nyceo.grid import chip_id, parse_chip_id
from nyceo.train.errors import TrainError
from nyceo.train.split import SPLITS, chip_split, read_split, split_chips, write_splits


def area_chips(row0: int, col0: int, n_rows: int, n_cols: int) -> list[str]:
    return [chip_id(r, c) for r in range(row0, row0 + n_rows) for c in range(col0, col0 + n_cols)]


def cross_split_pairs(splits: dict[str, list[str]], buffer_chips: int) -> list[tuple[str, str]]:
    """Kept chips of different splits within ``buffer_chips`` (Chebyshev) of each other."""
    where = {cid: s for s, ids in splits.items() for cid in ids}
    bad = []
    for cid, s in where.items():
        r, c = parse_chip_id(cid)
        for other, s2 in where.items():
            r2, c2 = parse_chip_id(other)
            if s2 != s and max(abs(r - r2), abs(c - c2)) <= buffer_chips:
                bad.append((cid, other))
    return bad


@pytest.mark.parametrize("block_chips,buffer_chips", [(2, 1), (3, 2), (1, 0)])
def test_no_chip_within_the_buffer_of_another_split(block_chips, buffer_chips):
    cfg = TrainSplitConfig(block_chips=block_chips, buffer_chips=buffer_chips, val_fraction=0.2, test_fraction=0.2)
    splits = split_chips(area_chips(200, 240, 24, 24), cfg)
    assert all(splits[s] for s in SPLITS)
    assert cross_split_pairs(splits, buffer_chips) == []
    # the buffer costs chips, but only around split borders: most chips are kept
    kept = sum(len(v) for v in splits.values())
    assert 0.2 * 24 * 24 < kept <= 24 * 24
    if buffer_chips == 0:
        assert kept == 24 * 24
    # whole blocks: chips of one split block never end up in two splits
    block_of = {}
    for s, ids in splits.items():
        for cid in ids:
            r, c = parse_chip_id(cid)
            assert block_of.setdefault((r // block_chips, c // block_chips), s) == s


def test_split_is_a_function_of_the_chip_id_stable_across_months_and_areas():
    cfg = TrainSplitConfig(block_chips=2, buffer_chips=1)
    june = split_chips(area_chips(210, 245, 12, 12), cfg)          # one month's stack
    july = split_chips(area_chips(214, 249, 14, 10), cfg)          # another month, other area
    where_june = {c: s for s, ids in june.items() for c in ids}
    where_july = {c: s for s, ids in july.items() for c in ids}
    common = set(where_june) & set(where_july)
    assert len(common) > 15  # 8 x 8 chips overlap; the buffer drops some
    assert all(where_june[c] == where_july[c] for c in common)
    assert all(chip_split(c, cfg) == where_june[c] for c in where_june)
    # another salt draws another split
    other = TrainSplitConfig(block_chips=2, buffer_chips=1, salt="another")
    assert any(chip_split(c, other) != where_june[c] for c in where_june)


def test_too_few_chips_for_the_split_is_an_error_naming_the_fix():
    cfg = TrainSplitConfig(block_chips=2, buffer_chips=3)
    with pytest.raises(TrainError, match=r"too few chips for the split.*buffer 3.*smaller split\.block_chips"):
        split_chips(area_chips(217, 251, 2, 3), cfg)


def test_split_files_round_trip(tmp_path):
    cfg = TrainSplitConfig(block_chips=2, buffer_chips=1)
    splits = split_chips(area_chips(200, 240, 10, 10), cfg)
    paths = write_splits(tmp_path / "splits", splits)
    assert sorted(p.name for p in paths.values()) == ["test.txt", "train.txt", "val.txt"]
    assert {s: read_split(p) for s, p in paths.items()} == splits
