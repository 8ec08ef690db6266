"""Atomic, idempotent writes to a local path or an fsspec URL.

Every file the pipeline publishes goes through here: it is written to a temporary name beside
the final one and renamed (locally an atomic ``os.replace``; on object stores the object only
appears once the upload completes), so a crash never leaves a half-written file under a final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import fsspec


def is_remote(path: str) -> bool:
    return "://" in str(path) and not str(path).startswith("file://")


def join(root: str, *parts: str) -> str:
    """Join path parts under a local root or a URL root."""
    root = str(root)
    if is_remote(root):
        return "/".join([root.rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(root, *parts))


@contextmanager
def atomic_local_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the final file's folder; rename onto ``final`` on success.

    The temporary file is created empty with mode 0666 minus the umask (0644 under umask 022),
    like any ``open(path, "w")``: ``tempfile.mkstemp`` would create it 0600, and the rename would
    publish catalogs and summaries that no other user (or web server) can read."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp{suffix}"
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(dest: str, data: bytes, storage_options: dict[str, Any] | None = None) -> None:
    """Write ``data`` to ``dest`` (local or URL) atomically."""
    if not is_remote(dest):
        with atomic_local_path(dest) as tmp:
            tmp.write_bytes(data)
        return
    fs, path = fsspec.core.url_to_fs(dest, **(storage_options or {}))
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)


def upload_file_atomic(local: str | Path, dest: str, storage_options: dict[str, Any] | None = None) -> None:
    """Copy a finished local file to ``dest`` (local or URL) without exposing a partial file."""
    if not is_remote(dest):
        with atomic_local_path(dest) as tmp:
            with open(local, "rb") as src, open(tmp, "wb") as out:
                while chunk := src.read(1 << 22):
                    out.write(chunk)
        return
    fs, path = fsspec.core.url_to_fs(dest, **(storage_options or {}))
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    fs.put_file(str(local), tmp)
    fs.mv(tmp, path)


def write_json_atomic(dest: str, obj: Any, storage_options: dict[str, Any] | None = None) -> None:
    write_bytes_atomic(dest, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode(), storage_options)


def missing_files(paths: list[str], storage_options: dict[str, Any] | None = None) -> list[str]:
    """Those of ``paths`` (local or URLs) that are not there, e.g. deleted by hand after a stage wrote them."""
    out = []
    for path in paths:
        fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
        if not fs.exists(p):
            out.append(path)
    return out


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()
