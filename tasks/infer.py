"""Infer task: one month's stack -> prediction stores (routed to GPU workers by the flows)."""

from __future__ import annotations

from prefect import task

from nyceo.config import load_config
from nyceo.infer import run_infer


@task(name="infer", retries=0)
def infer_task(
    config_path: str, month: str, adapters: list[str] | None = None, block_ids: list[str] | None = None
) -> dict[str, str]:
    """Predict the adapters (default: all configured) over the month; return {adapter: pred store path}.

    The model is loaded once per call; finished blocks are skipped, so a retry resumes.
    """
    return run_infer(load_config(config_path), month, adapters, block_ids=block_ids)
