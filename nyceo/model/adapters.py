"""Adapters in the published TerraMind-NYC-Adapters format: read, check, write (demo).

A folder holds ``adapter_config.json`` (peft ``LoraConfig`` JSON), ``adapter_model.safetensors``
(LoRA ``encoder.encoder.encoder.<i>.attn.{qkv,proj}.lora_{A,B}.default.weight`` keys, relative to
the segmentation model) and ``decoder_head.safetensors`` (``neck.*``, ``decoder.*``, ``head.*``).
Tensors load only through safetensors. Every check (hash, JSON, class count, tensor names and
shapes) happens before any inference and names the file, the tensor and the fix.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nyceo.config import AdapterConfig, PipelineConfig
from nyceo.model.weights import ADAPTER_FILES, Source, WeightsError, check_sha256, hub_file, parse_source

LORA_KEY_RE = re.compile(r"^(?P<layer>.+)\.lora_(?P<ab>[AB])\.(?P<slot>[^.]+)\.weight$")
HEAD_CLASS_TENSOR = "head.head.2.weight"
REQUIRED_LORA = {"r", "lora_alpha", "target_modules"}
_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
              "U8": torch.uint8, "BOOL": torch.bool}


class AdapterError(WeightsError):
    """An adapter folder does not hold what its configuration promises."""


@dataclass
class AdapterFiles:
    """The checked contents of one adapter folder (tensors on CPU)."""

    name: str
    source: Source
    lora_config: dict[str, Any]
    lora: dict[str, torch.Tensor]
    head_shapes: dict[str, tuple[int, ...]]
    sha256: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def untrained(self) -> bool:
        return bool(self.lora_config.get("nyceo_untrained", False))

    def head_tensors(self) -> dict[str, torch.Tensor]:
        """The neck/decoder/head tensors (read on demand: they are the bulk of an adapter)."""
        from safetensors.torch import load_file

        return load_file(str(self.paths["decoder_head.safetensors"]))


def adapter_paths(name: str, ad: AdapterConfig, config: PipelineConfig) -> tuple[Source, dict[str, Path]]:
    """Local paths of the three files of adapter ``name`` (hub cache or local folder)."""
    src = parse_source(ad.source, config.run.output_root)
    if src.kind == "hf":
        return src, {f: hub_file(src, f, config.infer, f"adapter {name}", config._source_path) for f in ADAPTER_FILES}
    folder = Path(src.location)
    paths = {f: folder / f for f in ADAPTER_FILES}
    missing = [f for f, p in paths.items() if not p.is_file()]
    if missing:
        hint = ("run `nyceo adapters make-demo -c <config>`" if ad.demo_seed is not None
                else "copy the published adapter folder there or use an hf:// source")
        raise AdapterError(f"adapter {name}: {', '.join(missing)} missing in folder {folder}; {hint}")
    return src, paths


def _read_lora_config(name: str, path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise AdapterError(f"adapter {name}: {path} is not valid JSON ({exc}); fetch the file again") from None
    missing = REQUIRED_LORA - set(cfg)
    if missing or str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(
            f"adapter {name}: {path} is not a peft LoraConfig (missing {sorted(missing)} or peft_type "
            f"{cfg.get('peft_type')!r}); use the adapter_config.json published with the adapter"
        )
    return cfg


def _check_classes(name: str, ad: AdapterConfig, head: dict[str, tuple[int, ...]], path: Path) -> None:
    if HEAD_CLASS_TENSOR not in head:
        raise AdapterError(f"adapter {name}: tensor '{HEAD_CLASS_TENSOR}' missing in {path}")
    n = head[HEAD_CLASS_TENSOR][0]
    if n != len(ad.classes):
        raise AdapterError(
            f"adapter {name}: {path} has {n} output classes ('{HEAD_CLASS_TENSOR}' has {n} rows) but "
            f"infer.adapters.{name}.classes lists {len(ad.classes)} ({ad.classes}); list exactly "
            "the classes the adapter was trained with, in channel order"
        )


def load_adapter_files(name: str, config: PipelineConfig) -> AdapterFiles:
    """Resolve, hash-check and read adapter ``name`` (no model needed)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    ad = config.infer.adapters[name]
    src, paths = adapter_paths(name, ad, config)
    digests = {
        f: check_sha256(p, ad.sha256.get(f, ""), config.infer.require_sha256, f"adapter {name}",
                        f"infer.adapters.{name}.sha256['{f}']", config._source_path)
        for f, p in paths.items()
    }
    lora_cfg = _read_lora_config(name, paths["adapter_config.json"])
    lora = load_file(str(paths["adapter_model.safetensors"]))
    with safe_open(str(paths["decoder_head.safetensors"]), "pt") as f:
        head = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    _check_classes(name, ad, head, paths["decoder_head.safetensors"])
    return AdapterFiles(name, src, lora_cfg, lora, head, digests, paths)


def lora_state_for_slot(files: AdapterFiles, slot: str) -> dict[str, torch.Tensor]:
    """LoRA tensors renamed from the published ``default`` slot to ``slot``; keys under model.encoder."""
    out = {}
    for key, value in files.lora.items():
        m = LORA_KEY_RE.match(key)
        if not m or not key.startswith("encoder."):
            raise AdapterError(
                f"adapter {files.name}: tensor '{key}' in {files.paths.get('adapter_model.safetensors')} "
                "is not a LoRA weight 'encoder.….lora_{A,B}.<slot>.weight'; use the published file"
            )
        out[f"{m['layer'][len('encoder.'):]}.lora_{m['ab']}.{slot}.weight"] = value
    return out


def check_state(files: AdapterFiles, which: str, given: dict[str, tuple[int, ...]],
                expected: dict[str, tuple[int, ...]], prefix: str = "") -> None:
    """Every expected tensor present with its shape, nothing unexpected (shapes by tensor name)."""
    path = files.paths.get(which, which)
    missing = sorted(set(expected) - set(given))
    if missing:
        raise AdapterError(
            f"adapter {files.name}: tensor '{prefix}{missing[0]}' missing in {path} ({len(missing)} "
            "missing); the file is incomplete or for another backbone — check infer.adapters."
            f"{files.name}.backbone or fetch the file again"
        )
    unexpected = sorted(set(given) - set(expected))
    if unexpected:
        raise AdapterError(
            f"adapter {files.name}: {path} holds tensor '{prefix}{unexpected[0]}' the model does not "
            f"have ({len(unexpected)} unexpected); check infer.adapters.{files.name}.backbone"
        )
    for key, shape in given.items():
        if tuple(shape) != tuple(expected[key]):
            raise AdapterError(
                f"adapter {files.name}: tensor '{prefix}{key}' in {path} has shape {tuple(shape)}, "
                f"the model expects {tuple(expected[key])}; check infer.adapters.{files.name}.backbone"
            )


def read_safetensors_into(path: Path, targets: dict[str, torch.Tensor], what: str = "adapter") -> None:
    """Fill ``targets`` (name -> tensor, names already checked) from safetensors ``path`` in place.

    Plain ``readinto`` straight into each CPU tensor's memory: unlike ``safe_open`` (which maps the
    file, so every page read stays in the process's RSS until it is closed) nothing but the targets
    becomes resident. A dtype mismatch or a non-CPU target goes through a one-tensor staging buffer.
    """
    with open(path, "rb") as fh:
        (n_header,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n_header))
        start = 8 + n_header
        with torch.no_grad():
            for key, target in targets.items():
                meta = header.get(key)
                dtype = _ST_DTYPES.get(meta["dtype"]) if meta else None
                if dtype is None:
                    raise AdapterError(f"{what}: tensor '{key}' missing or of unsupported dtype in {path}; "
                                       "fetch the file again")
                begin, end = meta["data_offsets"]
                direct = target.device.type == "cpu" and target.dtype == dtype and target.is_contiguous()
                buf = target.detach() if direct else torch.empty(target.shape, dtype=dtype)
                raw = buf.reshape(-1).view(torch.uint8)
                if end - begin != raw.numel():
                    raise AdapterError(f"{what}: tensor '{key}' in {path} holds {end - begin} bytes, "
                                       f"expected {raw.numel()}; the file is corrupt, fetch it again")
                fh.seek(start + begin)
                if fh.readinto(memoryview(raw.numpy())) != raw.numel():
                    raise AdapterError(f"{what}: {path} ends inside tensor '{key}'; fetch the file again")
                if not direct:
                    target.copy_(buf)
