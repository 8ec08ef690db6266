"""Acquisition: STAC scenes -> 4-timestep harmonized stacks on the chip grid (stack.zarr).

Public entry points (plain functions, no Prefect): :func:`run_acquire`, :func:`plan_acquire`,
:func:`acquire_block`, :func:`finalize_acquire`; status in ``nyceo.acquire.contract``.
"""

from nyceo.acquire.errors import AcquireError, AssetReadError, SkipReason, Skipped, StackMismatchError
from nyceo.acquire.stage import acquire_block, finalize_acquire, plan_acquire, run_acquire

__all__ = [
    "AcquireError", "AssetReadError", "SkipReason", "Skipped", "StackMismatchError",
    "acquire_block", "finalize_acquire", "plan_acquire", "run_acquire",
]
