"""Spatial train / val / test split: lattice blocks by hash, with a buffer, stable across months and runs.

A chip (row, col) belongs to split block ``(row // block_chips, col // block_chips)``; the block's
split is drawn from sha256(salt + block id) — a pure function of the id, so a chip never changes
split between months, runs or areas. Buffer: a chip is dropped when a chip of the set within
``buffer_chips`` (Chebyshev distance on the lattice) belongs to a split of higher priority
(test > val > train), so no kept chip lies within the buffer of a kept chip of another split.
Only chips that are present count as neighbours: a sparse sample of chips (a reduced recipe)
loses few to the buffer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from nyceo.config import TrainSplitConfig
from nyceo.grid import chip_id, parse_chip_id
from nyceo.io import atomic_local_path
from nyceo.train.errors import TrainError

SPLITS: tuple[str, ...] = ("train", "val", "test")
_PRIORITY = {"test": 2, "val": 1, "train": 0}


def _unit(text: str) -> float:
    """A uniform number in [0, 1) from sha256(text)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def block_split(row: int, col: int, cfg: TrainSplitConfig) -> str:
    """The split of the block holding chip (row, col)."""
    brow, bcol = row // cfg.block_chips, col // cfg.block_chips
    u = _unit(f"{cfg.salt}/b{brow}_{bcol}")
    if u < cfg.test_fraction:
        return "test"
    if u < cfg.test_fraction + cfg.val_fraction:
        return "val"
    return "train"


def chip_split(cid: str, cfg: TrainSplitConfig) -> str:
    """The split of chip ``cid``'s block (before the buffer)."""
    return block_split(*parse_chip_id(cid), cfg)


def _in_buffer(cid: str, own: str, where: dict[str, str], buffer_chips: int) -> bool:
    row, col = parse_chip_id(cid)
    for dr in range(-buffer_chips, buffer_chips + 1):
        for dc in range(-buffer_chips, buffer_chips + 1):
            other = where.get(chip_id(row + dr, col + dc))
            if other is not None and _PRIORITY[other] > _PRIORITY[own]:
                return True
    return False


def split_chips(chip_ids: list[str], cfg: TrainSplitConfig) -> dict[str, list[str]]:
    """{train, val, test: sorted chip ids} (buffer chips left out); errors when a split is too small."""
    where = {cid: chip_split(cid, cfg) for cid in sorted(set(chip_ids))}
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for cid, s in where.items():
        if not _in_buffer(cid, s, where, cfg.buffer_chips):
            out[s].append(cid)
    short = {s: len(out[s]) for s in SPLITS if len(out[s]) < cfg.min_chips.get(s, 1)}
    if short:
        raise TrainError(
            f"too few chips for the split: {len(set(chip_ids))} chips give "
            f"{ {s: len(v) for s, v in out.items()} } (buffer {cfg.buffer_chips} chip(s), blocks of "
            f"{cfg.block_chips}x{cfg.block_chips}); {sorted(short)} below split.min_chips {cfg.min_chips}. "
            "Use more chips (train months' stacks, chip_ids, max_chips), smaller split.block_chips or "
            "buffer_chips, or another split.salt"
        )
    return out


def write_splits(folder: Path, splits: dict[str, list[str]]) -> dict[str, Path]:
    """``folder/{train,val,test}.txt``, one chip id per line (atomic)."""
    paths = {}
    for s in SPLITS:
        path = folder / f"{s}.txt"
        with atomic_local_path(path) as tmp:
            tmp.write_text("".join(f"{cid}\n" for cid in splits[s]))
        paths[s] = path
    return paths


def read_split(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
