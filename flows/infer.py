"""The ``nyc-infer`` deployment's flow: one month's inference, on a GPU worker (pool nyc-gpu).

``monthly_run(..., infer_deployment="nyc-infer/nyc-infer")`` starts it with run_deployment and waits;
only workers of the GPU pool pick it up. The task inside is tagged ``gpu`` (tag concurrency limit).
"""

from __future__ import annotations

from prefect import flow

from flows.steps import StageContext
from flows.steps.infer import infer_local
from nyceo import paths
from nyceo.config import load_config


@flow(name="nyc-infer", log_prints=True)
def infer_month(month: str, config_path: str = "configs/demo.yaml", adapters: list[str] | None = None) -> dict[str, str]:
    """Predict ``adapters`` (default: all configured) over the month's stack; {adapter: pred store}."""
    config = load_config(config_path)
    ctx = StageContext(config, str(config_path), paths.check_month(month))
    return infer_local(ctx, sorted(adapters or config.infer.adapters))
