"""Per-stage progress of a month (done / total work units), read from the stages' own records on disk.

No Prefect here. :func:`month_progress` asks each stage's status function how far a month is;
:func:`progress_bars` polls it in a background thread and draws one bar per stage on the terminal
while the flow runs in the foreground (the CLI uses it for ``nyceo run``).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Iterator

import fsspec

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.io import join


def _count(pattern: str) -> int:
    fs, p = fsspec.core.url_to_fs(pattern)
    return len(fs.glob(p))


def acquire_progress(config: PipelineConfig, month: str) -> dict[str, Any]:
    """Acquisition blocks recorded (done or skipped for lack of data) / planned."""
    from nyceo.acquire.stage import stack_status

    s = stack_status(config, month)
    return {"done": int(s.get("done") or 0) + int(s.get("skipped") or 0), "total": s.get("total"),
            "status": s.get("status")}


def infer_progress(config: PipelineConfig, month: str) -> dict[str, Any]:
    """Inference blocks recorded over all adapters / (inference blocks x adapters).

    Inference plans its own blocks (``infer.block_size_chips``) over the stack's whole area, so the
    total comes from the same planner, not from the acquisition plan."""
    from nyceo.grid import Lattice
    from nyceo.infer.engine import plan_blocks
    from nyceo.infer.store import StackStore, StackStoreError, marker_dir

    adapters = list(config.infer.adapters)
    try:
        area = StackStore(paths.stack_store(config, month), Lattice.from_config(config.grid)).area
        size = config.infer.block_size_chips or config.grid.block_size_chips
        total: int | None = len(plan_blocks(area, size)) * len(adapters)
    except (StackStoreError, FileNotFoundError):
        total = None  # no stack yet: inference has not started
    done = sum(_count(join(marker_dir(paths.pred_store(config, month, a)), "*.json")) for a in adapters)
    return {"done": done, "total": total}


def mosaic_progress(config: PipelineConfig, month: str) -> dict[str, Any]:
    """COGs published for the month (all adapters, boroughs and the city)."""
    n = _count(join(paths.month_dir(config, month), "cog", "*", "*.tif"))
    return {"done": n, "total": None}


PROBES = {"acquire": acquire_progress, "infer": infer_progress, "mosaic": mosaic_progress}


def month_progress(config: PipelineConfig, month: str) -> dict[str, dict[str, Any]]:
    """{stage: {"done", "total"}} for every stage whose records can be read now."""
    out: dict[str, dict[str, Any]] = {}
    for name, probe in PROBES.items():
        try:
            out[name] = probe(config, month)
        except Exception as exc:  # noqa: BLE001 - a stage not started yet has nothing to read
            out[name] = {"done": 0, "total": None, "error": type(exc).__name__}
    return out


@contextmanager
def progress_bars(config: PipelineConfig, month: str, interval_s: float = 1.0) -> Iterator[None]:
    """Draw one progress bar per stage on stderr while the body runs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    stop = threading.Event()
    bars = Progress(TextColumn("{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    ids = {name: bars.add_task(name, total=None) for name in PROBES}

    def poll() -> None:
        while True:
            for name, p in month_progress(config, month).items():
                bars.update(ids[name], completed=p["done"], total=p["total"])
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
