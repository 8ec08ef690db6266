"""Weight averaging of the last epochs of a run (a "soup", as CryoSentinel's): ``average_last: K``.

``KeepLast`` is a Lightning callback on the final phase's Trainer (the LoRA fine-tuning, or the
probe phase of a probe-only recipe): at the end of every training epoch it copies the *trainable*
state — neck, decoder and head parameters with their BatchNorm running statistics, and the LoRA
tensors — to CPU memory and keeps the last K (no checkpoint file per epoch). ``soup_or_best`` then
averages them (floating tensors: the mean; integer counters such as ``num_batches_tracked``: the
last epoch's), evaluates the soup on val and test with the same confusion-matrix metrics as the
run's test figures, and keeps it only when it validates at least as well as the best checkpoint
(measured the same way); otherwise the task gets its best weights back and the record says so.
The frozen encoder is identical in every epoch, so averaging the trainable state is averaging
the model.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning.pytorch as pl
import torch

from nyceo.model.build import HEAD_PARTS
from nyceo.train.errors import TrainError


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's neck/decoder/head entries (parameters + buffers) and LoRA tensors."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            if k.split(".")[0] in HEAD_PARTS or ".lora_" in k}


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Mean of floating tensors over ``states`` (in float64, cast back); other tensors: the last state's."""
    if not states:
        raise TrainError("weight averaging: no epoch state was kept; the final phase ran no epoch")
    out = {}
    for key, last in states[-1].items():
        if torch.is_floating_point(last):
            out[key] = torch.stack([s[key].double() for s in states]).mean(0).to(last.dtype)
        else:
            out[key] = last.clone()
    return out


def load_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise TrainError(f"weight averaging: the model has no {result.unexpected_keys[:5]}")


class KeepLast(pl.Callback):
    """Keeps the trainable state of the last ``k`` training epochs in memory (and their epoch numbers)."""

    def __init__(self, k: int, phase: str) -> None:
        self.k, self.phase = k, phase
        self.states: deque[dict[str, torch.Tensor]] = deque(maxlen=k)
        self.epochs: deque[int] = deque(maxlen=k)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.states.append(trainable_state(pl_module.model))
        self.epochs.append(int(trainer.current_epoch))


def _summary(m: dict[str, Any]) -> dict[str, Any]:
    return {"mIoU": m["mIoU"], "IoU": m["IoU"], "pixel_accuracy": m["pixel_accuracy"]}


def soup_or_best(task: Any, keeper: KeepLast, val_ds: Any, test_ds: Any, classes: list[str],
                 ignore_index: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Average the kept epochs into ``task`` if that validates at least as well as the weights it holds
    (the best checkpoint); return (the ``soup`` record for metrics.json, the soup's full test metrics
    when the soup is kept, else None)."""
    from nyceo.train.fit import confusion, metrics_from_confusion

    def score(ds: Any) -> dict[str, Any]:
        return metrics_from_confusion(confusion(task, ds, len(classes), ignore_index), classes)

    best_state, best_val = trainable_state(task.model), score(val_ds)["mIoU"]
    load_trainable(task.model, average_states(list(keeper.states)))
    val, test = score(val_ds)["mIoU"], score(test_ds)
    kept = val is not None and (best_val is None or val >= best_val)
    record = {"average_last": keeper.k, "phase": keeper.phase, "epochs": list(keeper.epochs),
              "val_mIoU": val, "best_val_mIoU": best_val, "test": _summary(test),
              "exported": "soup" if kept else "best"}
    if kept:
        record["note"] = (f"the average of epochs {list(keeper.epochs)} validated at least as well as the best "
                          "checkpoint and is exported")
        return record, test
    load_trainable(task.model, best_state)
    record["note"] = (f"the average of epochs {list(keeper.epochs)} validated worse ({val}) than the best checkpoint "
                      f"({best_val}); the best checkpoint is exported")
    return record, None
