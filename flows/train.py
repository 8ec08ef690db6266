"""The ``nyc-train`` deployment's flow: train one LoRA adapter on a GPU worker (pool nyc-gpu).

A thin shell over ``nyceo.train.run.train_adapter``: one ``gpu``-tagged task trains (N seeds) and
exports the published adapter format; the model card becomes a Prefect markdown artifact.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from nyceo.config import load_config


@task(name="train-adapter", tags=["gpu"])
def train_task(config_path: str, adapter: str, months: list[str] | None, seeds: int, resume: bool) -> dict:
    from nyceo.train.run import train_adapter

    overrides = {f"train.adapters.{adapter}.months": list(months)} if months else None
    report = train_adapter(load_config(config_path, overrides), adapter, seeds=seeds, resume=resume)
    card = Path(report["folder"], "README.md").read_text()
    create_markdown_artifact(card, key=f"train-{adapter.replace('_', '-')}", description=f"{adapter} model card")
    return {"adapter": adapter, "folder": report["folder"], "sha256": report["sha256"],
            "test_mIoU": report["metrics"]["test"]["mIoU"], "seeds": report["metrics"]["seeds"],
            "key": report["key"], "snippet": report["snippet"]}


@flow(name="nyc-train", log_prints=True)
def train_flow(adapter: str, config_path: str = "configs/demo.yaml", months: list[str] | None = None,
               seeds: int = 1, resume: bool = False) -> dict:
    """Train ``adapter`` from its recipe (train.adapters.<adapter>) and export it; returns hashes and figures."""
    result = train_task(config_path, adapter, months, seeds, resume)
    print(f"{adapter}: test mIoU {result['test_mIoU']}; pin with:\n{result['snippet']}")
    return result
