"""Decoder warm-up on cached encoder features: the probe phase of a probe-then-fine-tune recipe.

With LoRA's B matrices at zero (peft's initialisation) the encoder computes exactly the frozen
base's features, so the neck, decoder and head can first be trained on features computed **once
per chip** instead of once per chip and epoch (Kumar et al. 2022, "Fine-Tuning can Distort
Pretrained Features": linear probing, then fine-tuning). ``fit_probe`` runs that phase through the
same terratorch ``SemanticSegmentationTask`` and a Lightning ``Trainer``: the task's encoder is
swapped for ``FeatureReplay`` (which hands the cached layer outputs to the neck) for the duration of
the fit and restored afterwards, whatever happens. The LoRA fine-tuning that may follow
(``max_epochs``) starts from the probe's best weights.

Features are cached in this process by what determines them (base, backbone, TiM settings,
normalization, fill rules, precision, the stack's content key and the chip), so adapters that share
a base and inputs (the demo's lulc and buildings) compute them once. A TiM backbone that samples
(temperature > 0) contributes one draw per chip to the probe phase.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nyceo.config import PipelineConfig
from nyceo.keys import digest
from nyceo.model.build import NECK_INDICES
from nyceo.model.tim_sampling import per_window_sampling, seeded_rows, window_seed

log = logging.getLogger("nyceo.train")
_CACHE: dict[str, torch.Tensor] = {}
PROBE_LAST_EVERY = 5  # epochs between probe last.ckpt writes (cheap epochs; a resume repeats at most 4)
_CACHE_MAX = 2048  # chips (~1.2 MB each in bfloat16 for the tiny backbone)


class FeatureReplay(nn.Module):
    """Stands in for the encoder: returns the cached outputs of the layers the neck selects."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.n_layers = n_layers

    def forward(self, x: dict[str, torch.Tensor], **_: Any) -> list[torch.Tensor | None]:
        feats = x["features"].float().unflatten(1, (len(NECK_INDICES), -1))
        return [feats[:, NECK_INDICES.index(i)] if i in NECK_INDICES else None for i in range(self.n_layers)]


class FeatureDataset(Dataset):
    """Cached features as terratorch batches; ``grid`` is an empty [0, H, W] carrier of the chip's size
    (terratorch reads the output size from the image's last two axes)."""

    def __init__(self, features: list[torch.Tensor], masks: list[torch.Tensor], size_px: int) -> None:
        self.features, self.masks, self.size_px = features, masks, size_px

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": {"features": self.features[i].flatten(0, 1),
                          "grid": torch.empty(0, self.size_px, self.size_px)}, "mask": self.masks[i]}


def feature_identity(config: PipelineConfig, adapter: str) -> dict[str, Any]:
    """What the encoder's features of a chip depend on besides the chip's stack content."""
    from nyceo.train.manifest import infer_settings

    ad = config.infer.adapters[adapter]
    settings = infer_settings(config, adapter)
    return {"backbone": ad.backbone, "tim_modalities": list(ad.tim_modalities), "base": settings["base"],
            "tim": settings.get("tim"), "norm_means": ad.norm_means, "norm_stds": ad.norm_stds,
            "timesteps": config.acquire.timesteps, "fill_fallback": config.infer.fill_fallback,
            "sdpa": config.infer.sdpa, "precision": _precision(config), "layers": list(NECK_INDICES)}


def _precision(config: PipelineConfig) -> str:
    return config.train.gpu_precision if torch.cuda.is_available() else config.train.cpu_precision


@contextlib.contextmanager
def _tim_seeded(config: PipelineConfig, encoder: nn.Module, keys: list[str], device: torch.device):
    """TiM's sampled tokens from ``infer.tim_seed`` and each sample's key (one generator per
    (sample, timestep) row, as the inference runner seeds windows), not from the global RNG: features
    then do not depend on what ran before in the process or on the batch a chip falls in."""
    tim_seed = config.infer.tim_seed
    rows = [window_seed(tim_seed, int(k[:15], 16), int(k[15:30], 16), t)
            for k in keys for t in range(config.acquire.timesteps)]
    with seeded_rows(encoder, tim_seed, rows, device):
        yield


def encode(config: PipelineConfig, adapter: str, encoder: nn.Module, dataset, stacks: dict[str, str],
           batch_size: int = 4) -> FeatureDataset:
    """The neck's input layers for every sample of ``dataset`` (cached), with its masks."""
    ident = feature_identity(config, adapter)
    keys = [digest({**ident, "stack": stacks[s.month], "chip": s.chip_id, "box": list(s.box)})
            for s in dataset.samples]
    todo = [i for i, k in enumerate(keys) if k not in _CACHE]
    flips, dataset.flips = dataset.flips, False
    training = encoder.training
    t0 = time.perf_counter()
    try:
        items = {i: dataset[i] for i in range(len(dataset))}
        device = next(encoder.parameters()).device
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=_precision(config).startswith("bf16"))
        encoder.eval()
        per_window_sampling(encoder)  # TiM samplers (none elsewhere) draw from the generators set below
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            x = {m: torch.stack([items[i]["image"][m] for i in idx]).to(device) for m in items[idx[0]]["image"]}
            with torch.inference_mode(), amp, _tim_seeded(config, encoder, [keys[i] for i in idx], device):
                layers = encoder(x)
            out = torch.stack([layers[j] for j in NECK_INDICES], dim=1).to("cpu", torch.bfloat16)
            for i, f in zip(idx, out):
                _CACHE[keys[i]] = f.clone()
    finally:
        dataset.flips = flips
        encoder.train(training)
    while len(_CACHE) > _CACHE_MAX:
        _CACHE.pop(next(iter(_CACHE)))
    if todo:
        log.info("train %s: encoder features of %d chips in %.1f s (%d cached)", adapter, len(todo),
                 time.perf_counter() - t0, len(keys) - len(todo))
    size = next(iter(items.values()))["mask"].shape[-1] if items else 0
    return FeatureDataset([_CACHE[k] for k in keys], [items[i]["mask"] for i in range(len(keys))], size)


def fit_probe(config: PipelineConfig, adapter: str, task: Any, sets: dict, stacks: dict[str, str], run_dir: Path,
              seed: int, resume: bool, callbacks: list | None) -> tuple[float, int, int]:
    """Train neck/decoder/head on cached features into ``run_dir``; the task ends holding the best
    (val mIoU) probe weights and its real encoder. Returns (best val mIoU, epochs, steps)."""
    from nyceo.train.fit import make_trainer, quiet_fit

    tcfg = config.train.adapters[adapter]
    encoder = task.model.encoder
    data = {s: encode(config, adapter, encoder, sets[s], stacks) for s in ("train", "val")}
    gen = torch.Generator().manual_seed(seed)
    train_dl = DataLoader(data["train"], batch_size=tcfg.batch_size, shuffle=True, generator=gen)
    val_dl = DataLoader(data["val"], batch_size=tcfg.batch_size)
    lr = task.hparams.get("lr")
    task.hparams["lr"] = tcfg.probe_lr or tcfg.lr
    task.model.encoder = FeatureReplay(max(NECK_INDICES) + 1)
    try:
        trainer = make_trainer(config, tcfg, run_dir, callbacks, epochs=tcfg.probe_epochs, last_every=PROBE_LAST_EVERY)
        last = run_dir / "checkpoints" / "last.ckpt"
        with quiet_fit():
            trainer.fit(task, train_dl, val_dl, ckpt_path=str(last) if resume and last.is_file() else None)
        cb = trainer.checkpoint_callback
        best = Path(cb.best_model_path) if cb.best_model_path else last
        task.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
        score = float(cb.best_model_score) if cb.best_model_score is not None else float("nan")
        return score, trainer.current_epoch, trainer.global_step
    finally:
        task.model.encoder = encoder
        task.hparams["lr"] = lr
