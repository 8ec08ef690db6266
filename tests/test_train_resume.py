"""Resume: a fit interrupted after its first epoch continues from last.ckpt with --resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from nyceo.config import load_config
from nyceo.train.manifest import read_manifest, train_root
from nyceo.train.run import train_adapter  # imports nyceo.model first: torchvision importable

import lightning.pytorch as pl  # noqa: E402  isort: skip
from tests.test_train_fit import ADAPTER, make_case


class Crash(pl.Callback):
    """Kills the fit at the start of epoch ``at`` (after last.ckpt of the epoch before was written)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.at:
            raise RuntimeError("simulated crash")


def test_resume_after_an_interrupted_fit(tmp_path):
    cfg = load_config(make_case(tmp_path, recipe={"max_epochs": 2, "patience": 5}))
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_adapter(cfg, ADAPTER, callbacks=[Crash(at=1)])
    run = train_root(cfg, ADAPTER) / "runs" / "seed0"
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert read_manifest(cfg, ADAPTER) is None  # nothing exported from a crashed run

    report = train_adapter(cfg, ADAPTER, resume=True)
    logs = sorted((run / "logs").glob("version_*/metrics.csv"))
    assert [p.parent.name for p in logs] == ["version_0", "version_1"]  # one CSV log per attempt
    rows = [r for p in logs for r in csv.DictReader(p.open())]
    steps = [(int(r["epoch"]), int(r["step"])) for r in rows if r.get("train/loss")]
    assert steps == [(0, 0), (1, 1)]  # epoch 0 from the first run, epoch 1 from the resumed one, no repeat
    assert report["metrics"]["runs"][0]["steps"] == 2 and report["metrics"]["runs"][0]["epochs"] == 2
    assert read_manifest(cfg, ADAPTER)["sha256"] == report["sha256"]
    assert Path(report["folder"], "adapter_model.safetensors").is_file()
