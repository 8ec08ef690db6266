"""Build TerraMind segmentation models in the recipe of the published NYC adapters.

``build_model`` makes terratorch's EncoderDecoderFactory model (temporal TerraMind encoder,
SelectIndices -> ReshapeTokensToImage -> LearnedInterpolateToPyramidal neck, UNet decoder,
segmentation head); ``load_base`` fills the encoder from a checkpoint with
``torch.load(weights_only=True, mmap=True)`` (tensors only, never pickled code; the encoder takes the
mapped tensors, no second copy); ``inject_lora`` adds a
named LoRA slot on the encoder blocks' ``attn.qkv`` / ``attn.proj``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nyceo.model.weights import WeightsError

MODALITIES: list[str] = ["S2L2A", "S1RTC", "DEM"]
NECK_INDICES: list[int] = [2, 5, 8, 11]
DECODER_CHANNELS: list[int] = [512, 256, 128, 64]
HEAD_DROPOUT = 0.1
# LoRA goes on the encoder's own transformer blocks only (not on a TiM sampler or tokenizer):
# module names relative to the TemporalWrapper are encoder.<block>.attn.{qkv,proj}.
LORA_TARGET_REGEX = r"encoder\.encoder\.\d+\.attn\.(qkv|proj)"
HEAD_PARTS: tuple[str, ...] = ("neck", "decoder", "head")


def is_tim(backbone: str) -> bool:
    return backbone.endswith("_tim")


def model_args(backbone: str, tim_modalities: list[str], num_classes: int, timesteps: int) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        backbone=backbone, backbone_pretrained=False, backbone_modalities=list(MODALITIES),
        backbone_use_temporal=True, backbone_temporal_pooling="concat",
        backbone_temporal_n_timestamps=timesteps,
        necks=[{"name": "SelectIndices", "indices": list(NECK_INDICES)},
               {"name": "ReshapeTokensToImage", "remove_cls_token": False},
               {"name": "LearnedInterpolateToPyramidal"}],
        decoder="UNetDecoder", decoder_channels=list(DECODER_CHANNELS),
        head_dropout=HEAD_DROPOUT, num_classes=num_classes,
    )
    if is_tim(backbone):
        args["backbone_tim_modalities"] = list(tim_modalities)
    return args


def terratorch_factory():
    """terratorch's EncoderDecoderFactory, imported without its side effect: importing terratorch
    runs ``torch.set_float32_matmul_precision("medium")`` (its clay_v15 module), which lets float32
    matmuls run in bfloat16 on CPUs that have it. The process's precision is restored, so
    ``amp_dtype: float32`` means float32."""
    precision = torch.get_float32_matmul_precision()
    try:
        from terratorch.models import EncoderDecoderFactory
    finally:
        torch.set_float32_matmul_precision(precision)
    return EncoderDecoderFactory


def build_model(backbone: str, tim_modalities: list[str], num_classes: int, timesteps: int,
                seed: int = 0) -> nn.Module:
    """A freshly initialised (seeded) model in eval mode."""
    EncoderDecoderFactory = terratorch_factory()
    # seeded initialisation without resetting the process's global RNG (a forked RNG is restored on exit)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)
        warnings.filterwarnings("ignore", message=".*TiM model not pre-trained.*")
        model = EncoderDecoderFactory().build_model(
            task="segmentation", **model_args(backbone, tim_modalities, num_classes, timesteps))
    return model.eval()


def inner_encoder(model: nn.Module) -> nn.Module:
    """The TerraMind ViT/TiM inside terratorch's TemporalWrapper."""
    return model.encoder.encoder


def load_base(model: nn.Module, backbone: str, path: Path) -> None:
    """Load the TerraMind checkpoint at ``path`` into the encoder (TiM: its sampler too)."""
    from terratorch.models.backbones.terramind.model.terramind_register import (
        checkpoint_filter_fn, checkpoint_filter_fn_tim,
    )

    state = _read_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    enc = inner_encoder(model)
    # The transformer blocks and the raw-input embeddings must come from the checkpoint.
    wanted = [k for k in enc.state_dict() if k.startswith(("encoder.", "encoder_embeddings.untok_"))]
    absent = [k for k in wanted if k not in state]
    if absent:
        raise WeightsError(
            f"base checkpoint {path} lacks {len(absent)} tensors of {backbone} (e.g. {absent[:3]}): "
            f"it is not a {backbone} checkpoint. Point infer.base_weights at the matching file."
        )
    logging.getLogger("terratorch").disabled = True
    try:
        filt = checkpoint_filter_fn_tim if is_tim(backbone) else checkpoint_filter_fn
        own = enc.state_dict()
        state = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in filt(state, enc).items()}
        del own
        # assign: the encoder takes the (memory-mapped) checkpoint tensors themselves, so the
        # randomly initialised ones are freed instead of being overwritten by a second copy
        enc.load_state_dict(state, strict=True, assign=True)
    except ValueError as exc:
        raise WeightsError(f"base checkpoint {path} does not fit {backbone}: {exc}") from None
    finally:
        logging.getLogger("terratorch").disabled = False


def _read_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)``, memory-mapped when the file is in the zip format."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) torch.save files cannot be mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle with code, or not a checkpoint at all
        raise WeightsError(
            f"base checkpoint {path} cannot be read as tensors only (torch.load weights_only=True): "
            f"{exc}. Use the published TerraMind_v1_*.pt file."
        ) from None


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc ``malloc_trim``; no-op elsewhere)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def inject_lora(model: nn.Module, lora_config: dict[str, Any], slot: str) -> None:
    """Add LoRA slot ``slot`` (rank/alpha from the adapter's config) to the encoder blocks."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(
        r=int(lora_config["r"]), lora_alpha=lora_config["lora_alpha"],
        lora_dropout=float(lora_config.get("lora_dropout", 0.0)),
        target_modules=LORA_TARGET_REGEX, bias=lora_config.get("bias", "none"),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inject_adapter_in_model(cfg, model.encoder, adapter_name=slot)


def set_lora_slot(model: nn.Module, slot: str, identity_layers: frozenset[str] = frozenset()) -> None:
    """Make ``slot`` the active LoRA adapter of every LoRA layer; the layers named in
    ``identity_layers`` (see ``identity_lora_layers``) run their base layer alone, which is exact."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in model.encoder.named_modules():
        if isinstance(module, BaseTunerLayer):
            module.set_adapter(slot)
            module.enable_adapters(name not in identity_layers)


def identity_lora_layers(model: nn.Module, slot: str) -> frozenset[str]:
    """Encoder LoRA layers whose ``slot`` adds exactly zero: plain LoRA (no DoRA) with an all-zero B
    (weight and bias), e.g. peft's initialisation or an adapter exported after a probe-only fit.
    Skipping them is exact and saves their two extra matmuls per token."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = set()
    for name, module in model.encoder.named_modules():
        if not isinstance(module, BaseTunerLayer) or slot not in getattr(module, "lora_B", {}):
            continue
        b = module.lora_B[slot]
        dora = bool(getattr(module, "use_dora", {}).get(slot, False))
        zero = not bool(b.weight.detach().any()) and (b.bias is None or not bool(b.bias.detach().any()))
        if zero and not dora:
            out.add(name)
    return frozenset(out)


def lora_layer_names(model: nn.Module) -> frozenset[str]:
    """Names of every LoRA-wrapped encoder layer."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return frozenset(n for n, m in model.encoder.named_modules() if isinstance(m, BaseTunerLayer))


def new_head(model: nn.Module, num_classes: int) -> nn.Module:
    """A segmentation head (the recipe's) for ``model``'s decoder and ``num_classes``."""
    from terratorch.models.heads import SegmentationHead

    return SegmentationHead(model.decoder.out_channels, num_classes, dropout=HEAD_DROPOUT).eval()


def new_head_modules(model: nn.Module, num_classes: int) -> nn.ModuleDict:
    """A neck, decoder and segmentation head shaped like ``model``'s, for ``num_classes``."""
    return nn.ModuleDict({
        "neck": copy.deepcopy(model.neck),
        "decoder": copy.deepcopy(model.decoder),
        "head": new_head(model, num_classes),
    }).eval()


def attach_head_modules(model: nn.Module, parts: nn.ModuleDict) -> None:
    """Swap ``model``'s neck, decoder and head for ``parts`` (no copy: module references)."""
    for name in HEAD_PARTS:
        setattr(model, name, parts[name])
