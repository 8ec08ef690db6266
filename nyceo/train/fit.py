"""One seeded training run: terratorch's SemanticSegmentationTask driven by a Lightning Trainer.

The model is the published recipe (``nyceo.model.build.model_args``: temporal TerraMind encoder,
SelectIndices -> ReshapeTokensToImage -> LearnedInterpolateToPyramidal neck, UNet decoder,
segmentation head). The encoder holds the *inference* base (the checkpoint of
``infer.base_weights``, or the runner's seeded random base), stays frozen, and gets a peft LoRA
``default`` slot on the blocks' attention (rank/alpha/dropout/targets from the config); neck,
decoder and head are fresh and trained. Early stopping and the best checkpoint follow val mIoU;
``last.ckpt`` is written every epoch so ``resume=True`` continues an interrupted run.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from nyceo.config import PipelineConfig, TrainAdapterConfig
from nyceo.model.build import build_model, is_tim, load_base, model_args
from nyceo.model.weights import resolve_base
from nyceo.train.errors import TrainError

LOADER_TARGETS = ("attn.proj", "attn.qkv")  # what nyceo.model.build.LORA_TARGET_REGEX puts LoRA on
MONITOR = "val/mIoU"
log = logging.getLogger("nyceo.train")


@dataclass
class RunResult:
    """What one seeded run produced."""

    seed: int
    run_dir: Path
    best_checkpoint: Path
    val_miou: float
    epochs: int
    global_step: int
    kept: str = "fine-tune"   # whose weights the task holds: "probe" or "fine-tune" (the better val mIoU)
    keeper: Any = None        # average_last > 0: the soup.KeepLast of the final phase (its last epochs' states)


def lora_regex(adapter: str, targets: list[str]) -> str:
    """peft target regex for ``targets`` on the encoder blocks (the loader's slots, nothing else)."""
    if tuple(sorted(targets)) != LOADER_TARGETS:
        raise TrainError(
            f"train.adapters.{adapter}.lora_targets {targets}: the inference loader puts LoRA on exactly "
            f"{list(LOADER_TARGETS)} of every encoder block (nyceo.model.build.LORA_TARGET_REGEX); use those"
        )
    alt = "|".join(re.escape(t) for t in sorted(targets))
    regex = rf"encoder\.encoder\.\d+\.({alt})"
    return regex


def build_task(config: PipelineConfig, adapter: str, seed: int) -> Any:
    """The SemanticSegmentationTask with the inference base in a frozen encoder and a LoRA slot."""
    from peft import LoraConfig, inject_adapter_in_model
    from terratorch.tasks import SemanticSegmentationTask

    ad, tcfg = config.infer.adapters[adapter], config.train.adapters[adapter]
    regex = lora_regex(adapter, tcfg.lora_targets)
    args = model_args(ad.backbone, ad.tim_modalities, len(ad.classes), config.acquire.timesteps)
    torch.manual_seed(seed)  # fresh neck / decoder / head from the run's seed
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TiM model not pre-trained.*")
        task = SemanticSegmentationTask(
            model_factory="EncoderDecoderFactory", model_args=args, loss="ce",
            class_weights=tcfg.class_weights, ignore_index=tcfg.ignore_index, lr=tcfg.lr, optimizer="AdamW",
            optimizer_hparams={"weight_decay": tcfg.weight_decay}, plot_on_val=False, class_names=list(ad.classes),
        )
    _load_inference_base(config, task.model, ad.backbone, ad.tim_modalities)
    if config.infer.sdpa:
        from nyceo.model.sdpa import use_sdpa

        use_sdpa(task.model)
    if is_tim(ad.backbone):
        from nyceo.model.runner import set_tim_sampling

        set_tim_sampling(task.model, config.infer.tim_temperature, config.infer.tim_top_p)
    lora = LoraConfig(r=tcfg.lora_r, lora_alpha=tcfg.lora_alpha, lora_dropout=tcfg.lora_dropout,
                      target_modules=regex, bias="none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inject_adapter_in_model(lora, task.model.encoder, adapter_name="default")
    for name, p in task.model.encoder.named_parameters():
        p.requires_grad = ".lora_" in name
    for module in task.model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = tcfg.bn_momentum
    return task


def _load_inference_base(config: PipelineConfig, model: torch.nn.Module, backbone: str, tim: list[str]) -> None:
    """The encoder the inference runner will use: checkpoint, or its seeded random base."""
    path, _ = resolve_base(config)
    if path is not None:
        load_base(model, backbone, path)
        return
    base = build_model(backbone, tim, 2, config.acquire.timesteps, seed=config.infer.random_base_seed)
    model.encoder.load_state_dict(base.encoder.state_dict(), strict=True)


def make_trainer(config: PipelineConfig, tcfg: TrainAdapterConfig, run_dir: Path, callbacks: list | None = None,
                 max_steps: int = -1, epochs: int | None = None, last_every: int = 1) -> Any:
    """The Lightning Trainer of one phase: the best weights by val mIoU (``best.ckpt``, weights only),
    ``last.ckpt`` (weights + optimizer, for ``resume``) every ``last_every`` epochs, early stopping."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    dev = config.infer.device
    gpu = dev.startswith("cuda") or (dev == "auto" and torch.cuda.is_available())
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor=MONITOR, mode="max",
                           save_top_k=1, save_weights_only=True, enable_version_counter=False)
    # "last" as an unmonitored top-1 checkpoint: Lightning 2.6 writes save_last only after a top-k save,
    # so save_top_k=0 + save_last=True wrote last.ckpt only when the fit ended (nothing to resume after a kill)
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
                           every_n_epochs=last_every, enable_version_counter=False)
    stop = EarlyStopping(monitor=MONITOR, mode="max", patience=tcfg.patience)
    return pl.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=1, precision=config.train.gpu_precision if gpu else config.train.cpu_precision,
        max_epochs=tcfg.max_epochs if epochs is None else epochs, max_steps=max_steps, callbacks=[ckpt, last, stop, *(callbacks or [])],
        logger=CSVLogger(str(run_dir), name="logs"), default_root_dir=str(run_dir),
        log_every_n_steps=1, num_sanity_val_steps=0, enable_model_summary=False, deterministic="warn",
        enable_progress_bar=True,
    )


@contextlib.contextmanager
def quiet_fit():
    """Lightning/torchmetrics warnings that say nothing about this run (single-process loaders,
    deterministic algorithms, an epoch-end compute of a metric with no update, pytree deprecation)."""
    with warnings.catch_warnings():
        for pattern in (".*does not have many workers.*", ".*deterministic.*", ".*was called before the ``update``.*",
                        ".*LeafSpec.*", ".*modules? in eval mode.*"):
            warnings.filterwarnings("ignore", message=pattern)
        yield


def loaders(train_ds, val_ds, tcfg: TrainAdapterConfig, seed: int) -> tuple[DataLoader, DataLoader]:
    gen = torch.Generator().manual_seed(seed)
    return (DataLoader(train_ds, batch_size=tcfg.batch_size, shuffle=True, generator=gen, num_workers=0),
            DataLoader(val_ds, batch_size=tcfg.batch_size, shuffle=False, num_workers=0))


def fit_one(config: PipelineConfig, adapter: str, train_ds, val_ds, run_dir: Path, seed: int, resume: bool = False,
            callbacks: list | None = None, max_steps: int = -1, stacks: dict[str, str] | None = None,
            ) -> tuple[Any, RunResult]:
    """Train one seeded run into ``run_dir``: the probe phase on cached features (``probe_epochs``,
    in ``run_dir/probe``), then LoRA fine-tuning (``max_epochs``); the task comes back holding the
    best (val mIoU) weights of the last phase. ``stacks``: month -> stack content key (feature cache)."""
    import lightning.pytorch as pl

    tcfg = config.train.adapters[adapter]
    from nyceo.model.runner import cpu_threads

    # always explicit: a dask LocalCluster earlier in the flow leaves OMP_NUM_THREADS=1 in this process
    torch.set_num_threads(cpu_threads(config.train.cpu_threads))
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    pl.seed_everything(seed, workers=True, verbose=False)
    if not resume:  # a new run never mixes with an earlier run's checkpoints or logs
        shutil.rmtree(run_dir, ignore_errors=True)
    task = build_task(config, adapter, seed)
    keeper = None
    if tcfg.average_last:  # the final phase's trainer keeps its last epochs' trainable state (nyceo.train.soup)
        from nyceo.train.soup import KeepLast

        keeper = KeepLast(tcfg.average_last, "fine-tune" if tcfg.max_epochs else "probe")
    final = [*(callbacks or []), *([keeper] if keeper else [])]
    last = run_dir / "checkpoints" / "last.ckpt"
    score, epochs, steps = float("nan"), 0, 0
    if tcfg.probe_epochs and not (resume and last.is_file()):  # a resumed fine-tuning holds the probe's result
        from nyceo.train.probe import fit_probe

        score, epochs, steps = fit_probe(config, adapter, task, {"train": train_ds, "val": val_ds}, stacks or {},
                                         run_dir / "probe", seed, resume,
                                         callbacks if tcfg.max_epochs else final)
        best = run_dir / "probe" / "checkpoints" / "best.ckpt"
        probe_state = {k: v.detach().clone() for k, v in task.state_dict().items()}
    kept = "probe"
    if tcfg.max_epochs:
        train_dl, val_dl = loaders(train_ds, val_ds, tcfg, seed)
        trainer = make_trainer(config, tcfg, run_dir, final, max_steps)
        with quiet_fit():
            trainer.fit(task, train_dl, val_dl, ckpt_path=str(last) if resume and last.is_file() else None)
        ckpt_cb = trainer.checkpoint_callback
        best = Path(ckpt_cb.best_model_path) if ckpt_cb.best_model_path else last
        tuned = float(ckpt_cb.best_model_score) if ckpt_cb.best_model_score is not None else float("nan")
        epochs, steps = epochs + trainer.current_epoch, steps + trainer.global_step
        if not tuned < score:  # fine-tuning kept unless the probe alone validated better (NaN: no probe)
            task.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
            score, kept = tuned, "fine-tune"
        else:
            task.load_state_dict(probe_state)
            best = run_dir / "probe" / "checkpoints" / "best.ckpt"
            log.info("train %s seed %d: LoRA fine-tuning validated worse (%.3f) than the probe (%.3f); the probe's "
                     "weights are kept", adapter, seed, tuned, score)
    return task.cpu().eval(), RunResult(seed, run_dir, best, score, epochs, steps, kept, keeper)


def confusion(task: Any, dataset, num_classes: int, ignore_index: int, batch_size: int = 4) -> np.ndarray:
    """Confusion matrix [true, pred] (pixel counts) of the task's model over ``dataset``."""
    model = task.model.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for i, batch in enumerate(DataLoader(dataset, batch_size=batch_size, shuffle=False)):
            x = {m: t.to(device) for m, t in batch["image"].items()}
            state = random.getstate()
            with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
                random.seed(i)  # TiM samples tokens (python random + torch RNG): the figures must not
                torch.manual_seed(i)  # depend on what ran before in the process
                pred = model(dict(x)).output.argmax(dim=1).cpu().numpy()
            random.setstate(state)
            y = batch["mask"].numpy()
            ok = y != ignore_index
            cm += np.bincount(y[ok] * num_classes + pred[ok], minlength=num_classes**2).reshape(num_classes, -1)
    return cm


def metrics_from_confusion(cm: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """IoU per class (None where a class is absent from truth and prediction), mIoU over the others."""
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    truth, pred = cm.sum(1), cm.sum(0)
    iou = {c: (float(tp[i] / union[i]) if union[i] > 0 else None) for i, c in enumerate(classes)}
    present = [v for v in iou.values() if v is not None]
    return {
        "mIoU": float(np.mean(present)) if present else None,
        "IoU": iou,
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "precision": {c: (float(tp[i] / pred[i]) if pred[i] else None) for i, c in enumerate(classes)},
        "recall": {c: (float(tp[i] / truth[i]) if truth[i] else None) for i, c in enumerate(classes)},
        "pixels": int(cm.sum()),
        "confusion_matrix": cm.tolist(),
    }
