"""Reads, listings and removals under a local path or an fsspec URL, for the zonal and report stages.

Every path the two stages read or list (prediction stores, change rasters, evaluation files,
quicklooks, published tables, the coverage cache) may be local or on object storage (``s3://``):
these helpers go through ``fsspec.core.url_to_fs``, which gets the configured ``storage_options``
as protocol defaults from :func:`nyceo.fs.configure` (called by ``load_config``). Writes stay with
the project's atomic helpers (:mod:`nyceo.io`). Local paths stay plain paths (never ``file://``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import fsspec

from nyceo.io import is_remote, join


def fs_of(url: str) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(str(url))


def exists(url: str) -> bool:
    fs, p = fs_of(url)
    return bool(fs.exists(p))


def is_file(url: str) -> bool:
    fs, p = fs_of(url)
    return bool(fs.isfile(p))


def read_bytes(url: str) -> bytes:
    fs, p = fs_of(url)
    return fs.cat_file(p)


def read_bytes_or_none(url: str) -> bytes | None:
    try:
        return read_bytes(url)
    except (FileNotFoundError, IsADirectoryError):
        return None


def sha256_of(url: str) -> str:
    fs, p = fs_of(url)
    h = hashlib.sha256()
    with fs.open(p, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def subdirs(url: str) -> list[str]:
    """Names of the folders directly under ``url`` (sorted; none when it does not exist)."""
    fs, p = fs_of(url)
    if not fs.isdir(p):
        return []
    return sorted(e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(p, detail=True) if e["type"] == "directory")


def find(url: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """Every file under ``url`` (recursive, sorted), optionally only those ending with ``suffixes``;
    spelled like ``url`` (a relative local root gives relative paths, a URL gives URLs)."""
    fs, p = fs_of(url)
    if not fs.isdir(p):
        return []
    base = p.rstrip("/") + "/"
    found = (f for f in fs.find(p) if f.startswith(base) and (not suffixes or f.endswith(suffixes)))
    return sorted(join(str(url), f[len(base):]) for f in found)


def relative(url: str, root: str) -> str:
    """``url`` relative to ``root`` ('a/b.png'), or its name when it is not under ``root``."""
    root = str(root).rstrip("/") + "/"
    return url[len(root):] if str(url).startswith(root) else str(url).rsplit("/", 1)[-1]


@contextmanager
def local_file(url: str) -> Iterator[Path]:
    """A local path holding the file at ``url`` (itself when local; a temporary copy otherwise)."""
    if not is_remote(url):
        yield Path(url)
        return
    fs, p = fs_of(url)
    with tempfile.TemporaryDirectory(prefix="nyceo-get-") as tmp:
        local = Path(tmp) / p.rsplit("/", 1)[-1]
        fs.get_file(p, str(local))
        yield local


@contextmanager
def open_raster(url: str) -> Iterator[Any]:
    """``rasterio.open`` of a local path or a URL (read through fsspec, no GDAL credentials needed)."""
    import rasterio

    if not is_remote(url):
        with rasterio.open(url) as ds:
            yield ds
        return
    fs, p = fs_of(url)
    with fs.open(p, "rb") as f, rasterio.open(f) as ds:
        yield ds


def remove_other_versions(final: str, key: str) -> list[str]:
    """Remove ``<final>@<key16>`` folders of other keys beside a published suffix-less folder.

    ``nyceo.versioned.versions`` only recognises names with a suffix (``name@key.zarr``), so its
    ``publish`` leaves old versions of ``zonal@...`` / ``report@...`` behind."""
    from nyceo.versioned import remove_tree

    parent, name = final.rstrip("/").rsplit("/", 1)
    keep = f"{name}@{key[:16]}"
    removed = []
    for entry in subdirs(parent):
        if re.fullmatch(rf"{re.escape(name)}@[0-9a-f]{{16}}", entry) and entry != keep:
            remove_tree(join(parent, entry))
            removed.append(entry)
    return removed
