"""Acquisition tasks: thin Prefect wrappers that pass the config path, month and block id.

The flow maps :func:`acquire_block_task` over ``plan["blocks"]`` (minus ``plan["done"]``), then
calls :func:`finalize_acquire_task`. Arrays never travel through Prefect: blocks write their chips
into stack.zarr and return a small record.
"""

from __future__ import annotations

from typing import Any

from prefect import task

from nyceo.acquire import acquire_block, finalize_acquire, plan_acquire
from nyceo.config import load_config


@task(name="acquire-plan", retries=1, retry_delay_seconds=10)
def plan_acquire_task(config_path: str, month: str) -> dict[str, Any]:
    """Search the month's scenes once, create (or reuse) the store; {"status", "blocks", "done", ...}."""
    return plan_acquire(load_config(config_path), month)


@task(name="acquire-block", retries=2, retry_delay_seconds=30)
def acquire_block_task(config_path: str, month: str, block_id: str, store: str | None = None) -> dict[str, Any]:
    """Acquire one block of build ``store`` (no-op if already recorded); its small record."""
    return acquire_block(load_config(config_path), month, block_id, store=store)


@task(name="acquire-finalize", retries=0)
def finalize_acquire_task(config_path: str, month: str, store: str | None = None) -> dict[str, Any]:
    """Per-chip dates, provenance, publish; {"status": "done"|"skipped", ...}."""
    return finalize_acquire(load_config(config_path), month, store)
