"""Grid task."""

from __future__ import annotations

from prefect import task

from nyceo.config import load_config
from nyceo.grid_stage import write_grid


@task(name="grid", retries=0)
def grid_task(config_path: str) -> str:
    """Write the chip index; return its path."""
    return write_grid(load_config(config_path))
