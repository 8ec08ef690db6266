"""Caching, result storage and retry policies shared by the flows (thin Prefect glue).

Cache keys come from the inputs that decide a task's outputs: the task name, the nyceo version,
the resolved configuration's hash (not the file path: the same settings in another file hit the
same cache), the month, and the block / adapter / borough a task works on. Results are persisted
as small JSON-able values (paths, counts) under ``<output_root>/<month>/.prefect-results`` (or
``<output_root>/grid/.prefect-results``), so deleting a month's folder also forgets its cache.
The flow additionally passes ``refresh_cache=True`` when a stage's outputs are missing on disk, so a
stale cache entry can never stand in for deleted outputs.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.context import TaskRunContext
from prefect.tasks import Task, exponential_backoff

from nyceo import __version__
from nyceo.config import load_config
from nyceo.io import is_remote, join

# Failures worth retrying: network and I/O hiccups, not deterministic errors.
_DETERMINISTIC_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_NAMES = {
    "TimeoutError", "ConnectionError", "HTTPError", "ConnectError", "ReadTimeout", "ConnectTimeout",
    "RemoteDisconnected", "APIError", "ClientError", "ServerDisconnectedError", "RasterioIOError",
    "CPLE_HttpResponseError", "ChunkedEncodingError", "ProtocolError", "IncompleteRead",
}
NETWORK_RETRIES = 3
NETWORK_RETRY_DELAYS_S = exponential_backoff(backoff_factor=10)(NETWORK_RETRIES)  # 10, 20, 40 s


@lru_cache(maxsize=64)
def _config_hash(config_path: str, mtime_ns: int) -> str:
    return load_config(config_path).config_hash()


def config_hash_of(config_path: str) -> str:
    """Hash of the resolved configuration in ``config_path`` (memoised per file version)."""
    return _config_hash(str(config_path), Path(config_path).stat().st_mtime_ns)


def stage_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key: task name + nyceo version + config hash + every other (JSON-able) parameter."""
    params = dict(parameters)
    cfg_path = params.pop("config_path", None)
    material = {
        "task": context.task.name,
        "nyceo": __version__,
        "config_hash": config_hash_of(cfg_path) if cfg_path else None,
        "params": params,
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return f"{context.task.name}-{hashlib.sha256(blob).hexdigest()[:32]}"


def _exception_chain(exc: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def is_transient(exc: BaseException | None) -> bool:
    """True for network / timeout / I/O errors anywhere in the exception chain."""
    for e in _exception_chain(exc):
        if isinstance(e, _DETERMINISTIC_OS_ERRORS):
            return False
        if isinstance(e, (TimeoutError, ConnectionError, OSError)):
            return True
        if any(c.__name__ in _TRANSIENT_NAMES for c in type(e).__mro__):
            return True
    return False


def retry_on_transient(task: Task, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry network steps only, never deterministic errors."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - inspecting the failure is the point
        return is_transient(exc)
    return False


def result_dir(output_root: str, *parts: str) -> Path | None:
    """Where a task's cached results live; None (Prefect's default under PREFECT_HOME) for URLs."""
    if is_remote(output_root):
        return None
    return Path(join(output_root, *parts, ".prefect-results")).resolve()


def cached(task: Task, storage: Path | None, refresh: bool, extra_key: str = "", **options: Any) -> Task:
    """``task`` with input-keyed caching and persisted results in ``storage``; ``extra_key`` adds
    inputs that are not parameters (e.g. a digest of the upstream store)."""

    def key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        return stage_cache_key(context, parameters) + (f"-{extra_key}" if extra_key else "")

    kw: dict[str, Any] = dict(cache_key_fn=key_fn, persist_result=True, refresh_cache=refresh)
    if storage is not None:
        kw["result_storage"] = storage
    return task.with_options(**kw, **options)


def network_retries() -> dict[str, Any]:
    """Task options for steps that touch the network (catalog search, asset reads)."""
    return dict(retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS_S,
                retry_condition_fn=retry_on_transient)
