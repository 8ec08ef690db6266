"""Seeded, untrained demo adapters in the published format (for the offline demo and the tests).

``make_demo_adapter`` writes the three files of an adapter whose config names a ``demo_seed``
and a local folder: LoRA A/B from the seed, neck/decoder/head as the seeded model initialises
them. ``adapter_config.json`` carries ``"nyceo_untrained": true``. The files are a pure function of
the seed and the pinned software, so ``configs/demo.yaml`` pins their sha256 like production
does; a mismatch after writing is an error (delete the folder or update the pins).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nyceo.config import AdapterConfig, PipelineConfig
from nyceo.io import atomic_local_path, sha256_file
from nyceo.model.adapters import AdapterError
from nyceo.model.build import HEAD_PARTS, build_model, inject_lora
from nyceo.model.weights import ADAPTER_FILES, parse_source

DEMO_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
             "target_modules": ["attn.qkv", "attn.proj"], "bias": "none"}


def _lora_config_json(ad: AdapterConfig, seed: int) -> dict[str, Any]:
    """peft LoraConfig JSON with the published hyper-parameters, marked untrained."""
    from peft import LoraConfig

    cfg = LoraConfig(**DEMO_LORA).to_dict()
    out = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in cfg.items()}
    out["peft_type"] = "LORA"
    out["task_type"] = None
    out["base_model_name_or_path"] = ad.backbone
    out["nyceo_untrained"] = True
    out["nyceo_demo_seed"] = seed
    return json.loads(json.dumps(out, default=str))


def demo_tensors(ad: AdapterConfig, seed: int, timesteps: int) -> tuple[dict, dict]:
    """(LoRA tensors under the published keys, neck/decoder/head tensors) for ``ad``."""
    shape_backbone = ad.backbone.removesuffix("_tim")  # same blocks, neck and decoder as the TiM one
    model = build_model(shape_backbone, [], len(ad.classes), timesteps, seed=seed)
    head = {k: v.contiguous() for k, v in model.state_dict().items() if k.split(".")[0] in HEAD_PARTS}
    inject_lora(model, DEMO_LORA, "default")
    gen = torch.Generator().manual_seed(seed + 1)
    lora = {}
    for key, value in sorted(model.state_dict().items()):
        if ".lora_" in key:
            std = 0.05 if ".lora_A." in key else 0.02  # non-zero B: the adapter really changes the output
            lora[key] = (torch.randn(value.shape, generator=gen) * std).contiguous()
    return lora, head


def make_demo_adapter(name: str, config: PipelineConfig, check_pins: bool = True) -> dict[str, str]:
    """Write demo adapter ``name`` into its local folder; return the files' sha256."""
    from safetensors.torch import save_file

    ad = config.infer.adapters[name]
    src = parse_source(ad.source, config.run.output_root)
    if ad.demo_seed is None or src.kind != "local":
        raise AdapterError(f"adapter {name} is not a demo adapter (needs demo_seed and a local folder source)")
    folder = Path(src.location)
    lora, head = demo_tensors(ad, ad.demo_seed, config.acquire.timesteps)
    # One metadata key: safetensors writes several in hash order, which would break the pinned sha256.
    meta = {"nyceo": json.dumps({"untrained": True, "seed": ad.demo_seed, "backbone": ad.backbone},
                                sort_keys=True)}
    with atomic_local_path(folder / "adapter_model.safetensors") as tmp:
        save_file(lora, str(tmp), metadata=meta)
    with atomic_local_path(folder / "decoder_head.safetensors") as tmp:
        save_file(head, str(tmp), metadata=meta)
    with atomic_local_path(folder / "adapter_config.json") as tmp:
        tmp.write_text(json.dumps(_lora_config_json(ad, ad.demo_seed), indent=2, sort_keys=True) + "\n")
    for f in ADAPTER_FILES:
        (folder / f).chmod(0o644)
    hashes = {f: sha256_file(folder / f) for f in ADAPTER_FILES}
    bad = {f: h for f, h in hashes.items() if check_pins and ad.sha256.get(f) and ad.sha256[f] != h}
    if bad:
        raise AdapterError(
            f"demo adapter {name} written to {folder} does not match the sha256 pinned in the config "
            f"({sorted(bad)}): the software that generates it differs from the pinned one. Check "
            f"requirements.lock, or pin the new hashes: {hashes}"
        )
    return hashes


def ensure_demo_adapters(config: PipelineConfig) -> list[str]:
    """Create every missing demo adapter of ``config``; return the names created (idempotent)."""
    created = []
    for name, ad in config.infer.adapters.items():
        if ad.demo_seed is None:
            continue
        folder = Path(parse_source(ad.source, config.run.output_root).location)
        if all((folder / f).is_file() for f in ADAPTER_FILES):
            continue
        make_demo_adapter(name, config)
        created.append(name)
    return created
