"""Versioned, content-addressed stores: a rebuild never touches the published output until it is done.

A store published at ``final`` (e.g. ``2024-07/pred/lulc_nyc.zarr``) is really the folder
``<name>@<key16>.zarr`` beside it, plus:

- a pointer ``<final>.current`` (small JSON: key, version folder name), written atomically last;
- on a local disk, ``final`` itself is a relative symlink to the version folder, swapped atomically
  (``os.replace`` of a new link), so ``xr.open_zarr(final)`` keeps working for users.

A build writes ``<name>@<newkey16>.zarr`` (resumable: its block records sit beside it); readers
keep reading the old version until :func:`publish` swaps the pointer; only then are other versions
removed. A SIGKILL at any moment leaves the previous version published and intact; the next run
resumes the build. Object stores use the pointer alone (readers call :func:`resolve`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import fsspec

from nyceo.io import is_remote, write_json_atomic

_VERSION_RE = re.compile(r"^(?P<stem>.+)@(?P<key>[0-9a-f]{16})(?P<suffix>\.[a-z0-9]+)$")
KEY_CHARS = 16


def _split(final: str) -> tuple[str, str, str]:
    """'a/b/lulc_nyc.zarr' -> ('a/b', 'lulc_nyc', '.zarr')."""
    parent, _, name = final.rstrip("/").rpartition("/")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    return parent, stem, f".{suffix}" if suffix else ""


def version_path(final: str, key: str) -> str:
    """Where the build of ``key`` for ``final`` lives."""
    parent, stem, suffix = _split(final)
    return f"{parent}/{stem}@{key[:KEY_CHARS]}{suffix}"


def pointer_path(final: str) -> str:
    return f"{final.rstrip('/')}.current"


def _fs(path: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def read_pointer(final: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The published version's pointer ({"key", "version"}), or None when nothing is published."""
    fs, p = _fs(pointer_path(final), storage_options)
    try:
        with fs.open(p, "r") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def published_key(final: str, storage_options: dict[str, Any] | None = None) -> str | None:
    ptr = read_pointer(final, storage_options)
    return ptr.get("key") if ptr else None


def resolve(final: str, storage_options: dict[str, Any] | None = None) -> str | None:
    """Path of the published version of ``final`` (None when nothing is published)."""
    ptr = read_pointer(final, storage_options)
    if not ptr:
        return None
    parent, _, _ = _split(final)
    return f"{parent}/{ptr['version']}"


def versions(final: str, storage_options: dict[str, Any] | None = None) -> dict[str, str]:
    """Every version folder of ``final`` on disk: {key16: path}."""
    parent, stem, suffix = _split(final)
    fs, p = _fs(parent, storage_options)
    if not fs.exists(p):
        return {}
    out = {}
    for entry in fs.ls(p, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        m = _VERSION_RE.match(name)
        if m and m["stem"] == stem and m["suffix"] == suffix:
            out[m["key"]] = f"{parent}/{name}"
    return out


def publish(final: str, key: str, build: str | None = None, extra: dict[str, Any] | None = None,
            storage_options: dict[str, Any] | None = None, companions: tuple[str, ...] = (".done",)) -> str:
    """Make the finished ``build`` (default: :func:`version_path` of ``key``) the published ``final``
    with content key ``key``; then remove every other version.

    Order: pointer (atomic) -> local symlink (atomic) -> delete old versions and their
    ``companions`` (side folders named ``<version><companion>``). Idempotent.
    """
    build = build or version_path(final, key)
    name = build.rstrip("/").rsplit("/", 1)[-1]
    write_json_atomic(pointer_path(final), {"key": key, "version": name, **(extra or {})}, storage_options)
    if not is_remote(final):
        _swap_symlink(Path(final), name)
    for path in versions(final, storage_options).values():
        if path.rstrip("/").rsplit("/", 1)[-1] != name:
            remove_tree(path, storage_options)
            for comp in companions:
                remove_tree(path + comp, storage_options)
    return build


def _swap_symlink(final: Path, target_name: str) -> None:
    """Point ``final`` at ``target_name`` (a sibling) atomically; a legacy real folder is replaced."""
    if final.is_dir() and not final.is_symlink():  # an unversioned store of an older layout
        shutil.rmtree(final)
    tmp = final.with_name(f".{final.name}.link-{os.getpid()}")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, final)


def unpublish(final: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove the pointer (and local link): the store is no longer published (e.g. found damaged)."""
    fs, p = _fs(pointer_path(final), storage_options)
    if fs.exists(p):
        fs.rm(p)
    if not is_remote(final) and Path(final).is_symlink():
        Path(final).unlink()


def remove_tree(path: str, storage_options: dict[str, Any] | None = None) -> None:
    if not is_remote(path):
        p = Path(path)
        if p.is_symlink():
            p.unlink()
        else:
            shutil.rmtree(p, ignore_errors=True)
        return
    fs, p = _fs(path, storage_options)
    if fs.exists(p):
        fs.rm(p, recursive=True)
