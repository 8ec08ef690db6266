"""Per-stage progress of a month (done / total work units), from the stages' own status.

No Prefect here. :func:`month_progress` asks each registered stage (``nyceo.contract``) how far a
month is; :func:`progress_bars` polls it in a background thread and draws one bar per stage on the
terminal while the flow runs in the foreground (the CLI uses it for ``nyceo run``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

from nyceo import contract
from nyceo.config import PipelineConfig


def month_progress(config: PipelineConfig, month: str) -> dict[str, dict[str, Any]]:
    """{stage: {"done", "total", "state"}} for every per-month stage."""
    out: dict[str, dict[str, Any]] = {}
    for name, st in contract.month_status(config, month).items():
        if contract.get(name).per_month:
            out[name] = {"done": st.done, "total": st.total, "state": st.state}
    return out


@contextmanager
def progress_bars(config: PipelineConfig, month: str, interval_s: float = 2.0) -> Iterator[None]:
    """Draw one progress bar per stage on stderr while the body runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stop = threading.Event()
    bars = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    ids = {st.name: bars.add_task(st.name, total=None) for st in contract.stages() if st.per_month}

    def poll() -> None:
        while True:
            for name, p in month_progress(config, month).items():
                total = p["total"] or (1 if p["state"] in contract.FINISHED else None)
                done = p["done"] if p["total"] else int(p["state"] in contract.FINISHED)
                bars.update(ids[name], completed=done, total=total)
            if stop.wait(interval_s):
                return

    thread = threading.Thread(target=poll, name="nyceo-progress", daemon=True)
    with bars:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
