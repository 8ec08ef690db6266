"""Export a trained task in the published TerraMind-NYC-Adapters format, plus a manifest of its hashes.

Folder (the adapter's ``infer.adapters.<name>.source`` when local): ``adapter_config.json`` (peft
LoraConfig JSON), ``adapter_model.safetensors`` (``encoder.encoder.encoder.<i>.attn.{qkv,proj}.
lora_{A,B}.default.weight``), ``decoder_head.safetensors`` (``neck.*``, ``decoder.*``, ``head.*``),
``eval/metrics.json``, ``splits/test.txt`` and a model card ``README.md``. Safetensors files carry
one metadata key (safetensors writes several in hash order, which would make the bytes vary).
The manifest (``<train.root>/<adapter>/manifest.json``, written last) records the files' sha256
and the training key: ``nyceo.train.manifest.pinned_config`` pins them for the loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nyceo.config import PipelineConfig
from nyceo.io import atomic_local_path, sha256_file, write_json_atomic
from nyceo.model.build import HEAD_PARTS
from nyceo.model.weights import ADAPTER_FILES
from nyceo.train.errors import TrainError

EXPORT_FILES: tuple[str, ...] = (*ADAPTER_FILES, "eval/metrics.json", "splits/test.txt", "README.md")


def export_folder(config: PipelineConfig, adapter: str) -> Path:
    """The adapter's local source folder (where inference reads it)."""
    from nyceo.model.weights import parse_source

    src = parse_source(config.infer.adapters[adapter].source, config.run.output_root)
    if src.kind != "local":
        raise TrainError(f"infer.adapters.{adapter}.source is {src.describe()}: training exports into a local "
                         "folder; point the source at one (e.g. '{output_root}/adapters/" + adapter + "')")
    return Path(src.location)


def lora_tensors(task: Any) -> dict[str, torch.Tensor]:
    """LoRA tensors under the published keys (relative to the segmentation model)."""
    out = {f"encoder.{k}": v.detach().float().cpu().contiguous()
           for k, v in task.model.encoder.state_dict().items() if ".lora_" in k}
    if not out:
        raise TrainError("the trained model holds no LoRA tensors; was LoRA injected?")
    return dict(sorted(out.items()))


def head_tensors(task: Any) -> dict[str, torch.Tensor]:
    return dict(sorted((k, v.detach().float().cpu().contiguous()) for k, v in task.model.state_dict().items()
                       if k.split(".")[0] in HEAD_PARTS))


def lora_config_json(config: PipelineConfig, adapter: str, training: dict[str, Any]) -> dict[str, Any]:
    from peft import LoraConfig

    ad, tcfg = config.infer.adapters[adapter], config.train.adapters[adapter]
    cfg = LoraConfig(r=tcfg.lora_r, lora_alpha=tcfg.lora_alpha, lora_dropout=tcfg.lora_dropout,
                     target_modules=list(tcfg.lora_targets), bias="none").to_dict()
    out = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in cfg.items()}
    out.update(peft_type="LORA", task_type=None, base_model_name_or_path=ad.backbone, nyceo_training=training)
    return json.loads(json.dumps(out, default=str))


def model_card(adapter: str, config: PipelineConfig, metrics: dict[str, Any], training: dict[str, Any]) -> str:
    ad, tcfg = config.infer.adapters[adapter], config.train.adapters[adapter]
    test = metrics["test"]
    rows = "\n".join(f"| {c} | {'—' if v is None else f'{v:.3f}'} |" for c, v in test["IoU"].items())
    seeds = metrics.get("seeds", {})
    spread = (f"test mIoU over {len(seeds.get('values', []))} seeds: mean {seeds['mean']:.3f}, "
              f"std {seeds['std']:.3f}" if len(seeds.get("values", [])) > 1 else "one seed")
    soup = f"\nWeight averaging (last {metrics['soup']['average_last']} epochs): {metrics['soup']['note']}." \
        if metrics.get("soup") else ""
    return f"""# {adapter}

LoRA adapter (published TerraMind-NYC-Adapters format) for `{ad.backbone}`, trained by `nyceo adapters train`.

- Classes (channel order): {', '.join(ad.classes)}
- Labels: `{tcfg.labels.source}`, remap {dict(tcfg.labels.remap)}; inputs: stacks of {', '.join(tcfg.months)}
- Recipe: EncoderDecoderFactory (temporal TerraMind, SelectIndices/ReshapeTokensToImage/LearnedInterpolateToPyramidal
  neck, UNet decoder {training['decoder_channels']}), frozen base `{training['base']}`, LoRA r={tcfg.lora_r}
  alpha={tcfg.lora_alpha} dropout={tcfg.lora_dropout} on {', '.join(tcfg.lora_targets)}; AdamW lr={tcfg.lr},
  batch {tcfg.batch_size}, at most {tcfg.max_epochs} epochs, early stopping on val mIoU (patience {tcfg.patience}).
- Chips: {training['chips']} (train/val/test by spatial blocks of {tcfg.split.block_chips} chips, buffer
  {tcfg.split.buffer_chips} chip(s); `splits/test.txt`). Seed {training['seed']}, {training['epochs']} epochs,
  {training['steps']} steps, {training['wall_s']:.0f} s on {training['device']}.

## Test split
mIoU **{test['mIoU']:.3f}**, pixel accuracy {test['pixel_accuracy']:.3f} ({test['pixels']} pixels); {spread}.{soup}

| class | IoU |
|---|---|
{rows}

Training key `{training['key'][:16]}`; full figures in `eval/metrics.json`.
"""


def write_adapter(task: Any, config: PipelineConfig, adapter: str, folder: Path, metrics: dict[str, Any],
                  test_ids: list[str], training: dict[str, Any]) -> dict[str, str]:
    """Write every export file into ``folder`` (atomic per file); return {relative file: sha256}."""
    from safetensors.torch import save_file

    meta = {"nyceo": json.dumps({"adapter": adapter, "key": training["key"], "seed": training["seed"]},
                                sort_keys=True)}
    with atomic_local_path(folder / "adapter_model.safetensors") as tmp:
        save_file(lora_tensors(task), str(tmp), metadata=meta)
    with atomic_local_path(folder / "decoder_head.safetensors") as tmp:
        save_file(head_tensors(task), str(tmp), metadata=meta)
    with atomic_local_path(folder / "adapter_config.json") as tmp:
        tmp.write_text(json.dumps(lora_config_json(config, adapter, training), indent=2, sort_keys=True) + "\n")
    write_json_atomic(str(folder / "eval" / "metrics.json"), metrics)
    with atomic_local_path(folder / "splits" / "test.txt") as tmp:
        tmp.write_text("".join(f"{c}\n" for c in test_ids))
    with atomic_local_path(folder / "README.md") as tmp:
        tmp.write_text(model_card(adapter, config, metrics, training))
    for f in EXPORT_FILES:
        (folder / f).chmod(0o644)
    return {f: sha256_file(folder / f) for f in EXPORT_FILES}


def config_snippet(config: PipelineConfig, adapter: str, hashes: dict[str, str]) -> str:
    """YAML lines to pin the exported files in ``infer.adapters.<adapter>.sha256``."""
    import yaml

    pins = {f: hashes[f] for f in ADAPTER_FILES}
    return yaml.safe_dump({"infer": {"adapters": {adapter: {"source": config.infer.adapters[adapter].source,
                                                             "sha256": pins}}}}, sort_keys=False)
