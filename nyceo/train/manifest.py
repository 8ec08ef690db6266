"""Training keys and manifests: what a trained adapter was made from, and the sha256 of its files.

``train_key`` = digest of the training stacks' provenance, the label source's identity, the
adapter's recipe (``train.adapters.<name>`` without ``auto``), what shapes the model (backbone,
classes, normalization, base weights, timesteps, fill rules, SDPA) and the code/software versions.
Never paths, threads, devices or time. The manifest (``<train.root>/<adapter>/manifest.json``) is
written after every exported file; ``pinned_config`` returns the configuration with each trained
adapter's files pinned from its manifest, so ``infer.require_sha256: true`` keeps holding for
locally trained adapters whose hashes cannot be known in advance (CPU float results differ
between machines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nyceo.config import PipelineConfig
from nyceo.keys import digest, infer_settings

TRAIN_CODE_VERSION = "3"
SOFTWARE = ("torch", "terratorch", "peft", "lightning", "safetensors")


def train_root(config: PipelineConfig, adapter: str) -> Path:
    return Path(config.train.root.replace("{output_root}", config.run.output_root)) / adapter


def manifest_path(config: PipelineConfig, adapter: str) -> Path:
    return train_root(config, adapter) / "manifest.json"


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in SOFTWARE:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def recipe_for_key(tcfg: Any) -> dict[str, Any]:
    """The recipe as the key sees it: not ``auto``; not the label attribute names (a vector source's
    attribute is in its identity, ``id_attribute`` only names features in messages); ``average_last``
    only when on (keys of recipes written before it existed stay valid)."""
    exclude: dict[str, Any] = {"auto": True, "labels": {"attribute", "id_attribute"}}
    if not tcfg.average_last:
        exclude["average_last"] = True
    return tcfg.model_dump(mode="json", exclude=exclude)


def train_key(config: PipelineConfig, adapter: str, stacks: dict[str, dict[str, Any]],
              labels: dict[str, Any], seeds: int = 1) -> str:
    """The content key of adapter ``adapter`` trained from ``stacks`` (month -> provenance) and ``labels``."""
    ad, tcfg = config.infer.adapters[adapter], config.train.adapters[adapter]
    settings = infer_settings(config, adapter)
    model = {"backbone": ad.backbone, "tim_modalities": list(ad.tim_modalities), "classes": list(ad.classes),
             "norm_means": ad.norm_means, "norm_stds": ad.norm_stds, "base": settings["base"],
             "timesteps": config.acquire.timesteps, "fill_fallback": config.infer.fill_fallback,
             "sdpa": config.infer.sdpa, "tim": settings.get("tim")}
    return digest({"stage": "train", "code": TRAIN_CODE_VERSION, "software": software_versions(),
                   "stacks": {m: p.get("inputs_key") or digest(p) for m, p in sorted(stacks.items())},
                   "labels": labels, "precision": [config.train.cpu_precision, config.train.gpu_precision],
                   "recipe": recipe_for_key(tcfg), "model": model, "seeds": seeds,
                   "grid": config.grid.model_dump(mode="json", exclude={"block_size_chips", "boroughs",
                                                                        "min_land_fraction"})})


def read_manifest(config: PipelineConfig, adapter: str) -> dict[str, Any] | None:
    path = manifest_path(config, adapter)
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def pinned_config(config: PipelineConfig) -> PipelineConfig:
    """``config`` with trained adapters pinned from their manifests: those without pinned sha256, and
    ``auto`` ones (the demo's, whose config pins belong to the seeded untrained fallback)."""
    adapters = dict(config.infer.adapters)
    changed = False
    for name, ad in adapters.items():
        tcfg = config.train.adapters.get(name)
        if tcfg is None or (ad.sha256 and not tcfg.auto):
            continue
        manifest = read_manifest(config, name)
        if manifest and manifest.get("sha256"):
            from nyceo.infer.contract import ADAPTER_FILES  # (nyceo.model would import torch)

            pins = {f: manifest["sha256"][f] for f in ADAPTER_FILES if f in manifest["sha256"]}
            adapters[name] = ad.model_copy(update={"sha256": pins, "demo_seed": None})
            changed = True
    if not changed:
        return config
    return config.model_copy(update={"infer": config.infer.model_copy(update={"adapters": adapters})})
