"""Provenance records attached to every output: what made it, from what, with which settings."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

from nyceo import __version__
from nyceo.config import PipelineConfig


def base_provenance(config: PipelineConfig, stage: str, **extra: Any) -> dict[str, Any]:
    """The common provenance block: software, config hash, grid definition, stage, time."""
    g = config.grid
    return {
        "software": f"nyceo {__version__}",
        "python": platform.python_version(),
        "stage": stage,
        "run_name": config.run.name,
        "config_hash": config.config_hash(),
        "grid": {
            "crs": g.crs,
            "resolution_m": g.resolution_m,
            "chip_size_px": g.chip_size_px,
            "origin_x_m": g.origin_x_m,
            "origin_y_m": g.origin_y_m,
        },
        "created_utc": created_utc(),
        **extra,
    }


def created_utc() -> str:
    """Now in UTC, or ``SOURCE_DATE_EPOCH`` (seconds) when set: the reproducible-builds convention
    that lets a resumed run write byte-identical outputs to an uninterrupted one."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.isoformat(timespec="seconds")
