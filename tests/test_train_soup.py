"""Weight averaging of the last epochs (average_last) on the tiny case, probe-only recipe: the soup
is the mean of the last K epochs' trainable state (BatchNorm statistics included), it is evaluated
on val and test and recorded in metrics.json, and the exported weights are the soup or the best
checkpoint, whichever validated better."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nyceo.config import load_config
from nyceo.train.run import train_adapter  # imports nyceo.model first: torchvision importable

import lightning.pytorch as pl  # noqa: E402  isort: skip
from tests.test_train_fit import ADAPTER, make_case

RECIPE = {"probe_epochs": 2, "probe_lr": 0.002, "max_epochs": 0, "average_last": 2}


class Record(pl.Callback):
    """The test's own copy of the head's state at the end of every training epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.states.append({k: v.detach().clone() for k, v in pl_module.model.state_dict().items()
                            if k.split(".")[0] in ("neck", "decoder", "head")})


@pytest.fixture(scope="module")
def souped(tmp_path_factory):
    cfg = load_config(make_case(tmp_path_factory.mktemp("soup"), recipe=RECIPE))
    record = Record()
    return cfg, train_adapter(cfg, ADAPTER, callbacks=[record]), record


def test_the_soup_is_recorded_and_the_better_weights_exported(souped):
    import json

    cfg, report, record = souped
    folder = Path(report["folder"])
    metrics = json.loads((folder / "eval" / "metrics.json").read_text())
    soup = metrics["soup"]
    assert (soup["average_last"], soup["phase"], soup["epochs"]) == (2, "probe", [0, 1]) and len(record.states) == 2
    assert 0 <= soup["val_mIoU"] <= 1 and 0 <= soup["best_val_mIoU"] <= 1 and set(soup["test"]["IoU"]) == {
        "background", "building"}
    head = load_file(str(folder / "decoder_head.safetensors"))
    if soup["val_mIoU"] >= soup["best_val_mIoU"]:
        assert soup["exported"] == "soup" and metrics["test"]["mIoU"] == soup["test"]["mIoU"]
        expected = {k: (torch.stack([record.states[0][k].double(), record.states[1][k].double()]).mean(0)
                        if torch.is_floating_point(v) else v) for k, v in record.states[1].items()}
    else:
        assert soup["exported"] == "best" and "the best checkpoint is exported" in soup["note"]
        best = torch.load(Path(report["train_root"]) / "runs" / "seed0" / "probe" / "checkpoints" / "best.ckpt",
                          map_location="cpu", weights_only=False)["state_dict"]
        expected = {k[len("model."):]: v for k, v in best.items() if k.startswith("model.") and k.split(".")[1] in
                    ("neck", "decoder", "head")}
    assert set(head) == set(expected)
    for k, v in expected.items():
        np.testing.assert_allclose(head[k].numpy(), v.float().numpy(), atol=1e-6, err_msg=k)
    running = [k for k in head if k.endswith("running_mean")]
    assert running and any(not torch.equal(record.states[0][k], record.states[1][k]) for k in running)
    assert "Weight averaging (last 2 epochs)" in (folder / "README.md").read_text()


def test_a_soup_that_validates_worse_gives_the_best_weights_back(souped):
    from nyceo.train.data import ChipDataset
    from nyceo.train.fit import confusion, metrics_from_confusion
    from nyceo.train.run import preflight
    from nyceo.train.soup import KeepLast, soup_or_best, trainable_state

    cfg, report, _ = souped
    task, classes = report["task"], ["background", "building"]
    prep = preflight(cfg, ADAPTER)
    sets = {s: ChipDataset([x for x in prep.samples.samples if x.chip_id in prep.splits[s]], cfg, ADAPTER)
            for s in ("val", "test")}
    before = trainable_state(task.model)
    constant = {k: (torch.zeros_like(v) if torch.is_floating_point(v) else v) for k, v in before.items()}
    val_labels = np.concatenate([x.labels.ravel() for x in sets["val"].samples])
    minority = int(np.argmin(np.bincount(val_labels[val_labels != 255], minlength=2)))
    constant["head.head.2.bias"] = torch.nn.functional.one_hot(torch.tensor(minority), 2).float()  # everywhere
    keeper = KeepLast(1, "probe")
    keeper.states.append(constant)
    keeper.epochs.append(9)
    best_val = metrics_from_confusion(confusion(task, sets["val"], 2, 255), classes)["mIoU"]
    record, test = soup_or_best(task, keeper, sets["val"], sets["test"], classes, 255)
    assert record["val_mIoU"] < best_val == record["best_val_mIoU"]
    assert record["exported"] == "best" and test is None and record["epochs"] == [9]
    after = trainable_state(task.model)
    assert all(torch.equal(after[k], before[k]) for k in before)
