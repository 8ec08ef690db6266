"""Chunk manifests: which chunk files a finished block wrote, so a deleted or damaged one is found.

Stores are Zarr v3 with one chunk per chip in (y, x) and a single chunk along every leading axis
(time, band, class), so a chip's chunk of an array is the file ``<array>/c/0/…/0/<row>/<col>``
(default chunk key encoding). Zarr skips chunks that hold only the fill value, so a manifest
records what exists right after a block is written — name and size — and :func:`verify` checks
that every recorded file is still there with its size. Decoding errors (random bytes in a chunk)
are caught by the readers, which name the chunk with :func:`chunk_for_error`.
"""

from __future__ import annotations

from typing import Any, Iterable

import fsspec


def chunk_key(array: str, ndim: int, row: int, col: int) -> str:
    """Relative path of the chunk of chip (row, col) (area chip indices) of ``array``."""
    return "/".join([array, "c", *(["0"] * (ndim - 2)), str(row), str(col)])


def manifest(store: str, arrays: dict[str, int], chips: Iterable[tuple[int, int]]) -> dict[str, int]:
    """{relative chunk path: size} of the chunks of ``chips`` (area chip indices) that exist now.

    ``arrays`` maps array name -> number of dimensions.
    """
    fs, root = fsspec.core.url_to_fs(store)
    root = root.rstrip("/")
    out: dict[str, int] = {}
    for row, col in chips:
        for name, ndim in arrays.items():
            rel = chunk_key(name, ndim, row, col)
            try:
                out[rel] = int(fs.info(f"{root}/{rel}")["size"])
            except FileNotFoundError:
                continue  # all fill value: zarr wrote nothing
    return out


def verify(store: str, recorded: dict[str, int], fs_and_root: tuple[Any, str] | None = None) -> list[str]:
    """The recorded chunk files that are missing or changed size (empty list: all present)."""
    fs, root = fs_and_root or fsspec.core.url_to_fs(store)
    root = root.rstrip("/")
    sizes = _sizes(fs, root)
    return sorted(rel for rel, size in recorded.items() if sizes.get(rel) != size)


def _sizes(fs: Any, root: str) -> dict[str, int]:
    """{relative path: size} of every file under ``root`` (one listing, not one call per chunk)."""
    if not fs.exists(root):
        return {}
    found = fs.find(root, detail=True)
    return {name[len(root) + 1:]: int(info.get("size") or 0) for name, info in found.items()}


def chip_of(rel: str) -> tuple[str, int, int]:
    """'s2/c/0/0/3/5' -> ('s2', 3, 5)."""
    parts = rel.split("/")
    return parts[0], int(parts[-2]), int(parts[-1])
