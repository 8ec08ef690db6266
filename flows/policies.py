"""Retry policies shared by the flows (thin Prefect glue).

Whether a stage's outputs are current is decided by the stages' own content keys
(``nyceo.contract``), not by a Prefect result cache: nothing is cached here. Only network and I/O
failures are retried; deterministic errors fail at once with their message.
"""

from __future__ import annotations

from typing import Any

from prefect.tasks import Task, exponential_backoff

# Failures worth retrying: network and I/O hiccups, not deterministic errors.
_DETERMINISTIC_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_TRANSIENT_NAMES = {
    "TimeoutError", "ConnectionError", "HTTPError", "ConnectError", "ReadTimeout", "ConnectTimeout",
    "RemoteDisconnected", "APIError", "ClientError", "ServerDisconnectedError", "RasterioIOError",
    "CPLE_HttpResponseError", "ChunkedEncodingError", "ProtocolError", "IncompleteRead",
}
NETWORK_RETRIES = 3
NETWORK_RETRY_DELAYS_S = exponential_backoff(backoff_factor=10)(NETWORK_RETRIES)  # 10, 20, 40 s


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


def network_retries() -> dict[str, Any]:
    """Task options for steps that touch the network (catalog search, asset reads)."""
    return dict(retries=NETWORK_RETRIES, retry_delay_seconds=NETWORK_RETRY_DELAYS_S,
                retry_condition_fn=retry_on_transient)
