"""One lock per (output root, month, stage), on local disk or object storage.

Two runs of the same month must not build the same outputs at once (they would both create the
stack, or both predict). A lock is a small JSON file ``<month>/.locks/<stage>.lock`` naming its
holder (host, pid, start time, token), created exclusively (``O_EXCL`` locally; on object storage a
conditional put — ``If-None-Match: *`` — through fsspec's exclusive-create mode), and refreshed by
a heartbeat thread. A second run waits up to ``run.lock_timeout_s`` (logging who holds it), then
fails naming the holder. A lock whose holder is dead (same host, pid gone) or whose heartbeat is
older than ``run.lock_stale_s`` is broken — by the one run that creates its break marker
(exclusively, as the lock itself), and only if it still holds the same token.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator

import fsspec

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.io import is_remote, join

log = logging.getLogger("nyceo.locks")
HEARTBEAT_S = 15.0


class LockedError(RuntimeError):
    """Another live run holds the lock."""


def lock_path(config: PipelineConfig, month: str | None, stage: str) -> str:
    base = paths.month_dir(config, month) if month else join(config.run.output_root, "grid")
    return join(base, ".locks", f"{stage}.lock")


def _now() -> float:
    return time.time()


def _holder(token: str) -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "token": token,
            "started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "heartbeat": _now()}


def _create_exclusive(path: str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist; True when created."""
    if not is_remote(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, p = fsspec.core.url_to_fs(path)
    try:
        with fs.open(p, "xb") as f:
            f.write(data)
        return True
    except (FileExistsError, OSError) as exc:
        if isinstance(exc, FileExistsError) or "PreconditionFailed" in repr(exc) or "412" in str(exc):
            return False
        raise


def read_lock(path: str) -> dict[str, Any] | None:
    fs, p = fsspec.core.url_to_fs(path)
    try:
        return json.loads(fs.cat_file(p))
    except (FileNotFoundError, ValueError):
        return None


def _is_stale(holder: dict[str, Any], stale_s: float) -> str | None:
    """Why the holder is gone (None: it looks alive)."""
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return f"process {holder['pid']} on {holder['host']} is gone"
        except PermissionError:
            pass
        return None
    age = _now() - float(holder.get("heartbeat", 0))
    return f"no heartbeat for {age:.0f} s" if age > stale_s else None


def _break(path: str, holder: dict[str, Any], stale_s: float) -> None:
    """Delete a stale lock: only the run that creates its break marker (exclusively, one per token)
    may, and only while the lock still holds that token.

    Re-reading the token alone is not enough: two runs that both judged the lock stale could both
    re-read it before either deleted it, and the slower one would then delete the lock the faster one
    had just taken. The marker makes the break of one token a single winner's; it stays until the
    next holder releases (``release`` removes the markers).
    """
    marker = f"{path}.break-{holder.get('token')}"
    if not _create_exclusive(marker, json.dumps(_holder("break")).encode()):
        breaker = read_lock(marker)  # another run is breaking this lock, unless it died doing so
        if breaker is not None and _now() - float(breaker.get("heartbeat", 0)) > stale_s:
            fs, p = fsspec.core.url_to_fs(marker)
            fs.rm(p)  # a later attempt (the caller loops) may break the lock again
        return
    again = read_lock(path)
    if again and again.get("token") == holder.get("token"):
        fs, p = fsspec.core.url_to_fs(path)
        fs.rm(p)


def describe(holder: dict[str, Any]) -> str:
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {holder.get('started_utc')}"


def acquire(path: str, timeout_s: float, stale_s: float, poll_s: float = 1.0) -> dict[str, Any]:
    """Take the lock at ``path`` (waiting up to ``timeout_s``); return our holder record."""
    token = uuid.uuid4().hex
    deadline = _now() + timeout_s
    announced = False
    while True:
        me = _holder(token)
        if _create_exclusive(path, json.dumps(me).encode()):
            return me
        holder = read_lock(path)
        if holder is None:
            continue  # released between our attempt and the read
        why = _is_stale(holder, stale_s)
        if why:
            log.warning("breaking stale lock %s (%s; %s)", path, describe(holder), why)
            _break(path, holder, stale_s)
            continue
        if _now() >= deadline:
            raise LockedError(f"{path} is held by another run ({describe(holder)}); wait for it to finish, or "
                              f"if that process is gone on another host, delete the lock file")
        if not announced:
            log.warning("waiting for %s held by %s", path, describe(holder))
            announced = True
        time.sleep(poll_s)


def release(path: str, me: dict[str, Any]) -> None:
    """Delete our lock (if it is still ours) and the break markers of the locks broken before it."""
    held = read_lock(path)
    if held and held.get("token") == me["token"]:
        fs, p = fsspec.core.url_to_fs(path)
        fs.rm(p)
        for marker in fs.glob(f"{p}.break-*"):
            fs.rm(marker)


@contextmanager
def stage_lock(config: PipelineConfig, month: str | None, stage: str) -> Iterator[dict[str, Any]]:
    """Hold the (output root, month, stage) lock for the body, with a heartbeat."""
    path = lock_path(config, month, stage)
    me = acquire(path, config.run.lock_timeout_s, config.run.lock_stale_s)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            held = read_lock(path)
            if not held or held.get("token") != me["token"]:
                return
            fs, p = fsspec.core.url_to_fs(path)
            fs.pipe_file(p, json.dumps({**held, "heartbeat": _now()}).encode())

    thread = threading.Thread(target=beat, name=f"nyceo-lock-{stage}", daemon=True)
    thread.start()
    try:
        yield me
    finally:
        stop.set()
        release(path, me)
