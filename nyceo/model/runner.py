"""AdapterRunner: one TerraMind base per backbone variant, adapters swapped in place.

Per backbone variant (``terramind_v1_base``; ``terramind_v1_base_tim`` for TiM) one model is
built and its base weights loaded once. Every adapter of that variant gets its own peft LoRA
slot on the encoder blocks and its own neck/decoder/head modules; switching adapters activates
its LoRA slot and attaches its modules (references, no copies, no rebuild). Memory is therefore
base + Σ adapters, not Σ (base + adapter).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from nyceo.config import PipelineConfig
from nyceo.model.adapters import (
    AdapterError, AdapterFiles, check_state, load_adapter_files, lora_state_for_slot, read_safetensors_into,
)
from nyceo.model.build import (
    attach_head_modules, build_model, identity_lora_layers, inject_lora, is_tim, load_base, lora_layer_names, new_head,
    new_head_modules, release_memory, set_lora_slot,
)
from nyceo.model.sdpa import use_sdpa
from nyceo.model.shared_encoder import capture_features, encoder_key, replay_features
from nyceo.model.tim_sampling import batch_safe_sampling, per_window_sampling, seeded_rows, window_seed
from nyceo.model.weights import resolve_base

FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
# Bumped whenever the runner's outputs change for the same weights and inputs (it is part of the
# provenance, hence of the prediction stores' inputs key): 2 = LoRA slot restored after loading,
# TiM tokens seeded per window.
RUNNER_VERSION = 2
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def select_device(requested: str = "auto", cuda_available: Callable[[], bool] | None = None,
                  mps_available: Callable[[], bool] | None = None) -> torch.device:
    """auto -> CUDA (also ROCm builds) -> Apple MPS -> CPU; an unavailable explicit device is an error."""
    cuda_ok = (cuda_available or torch.cuda.is_available)()
    mps_ok = (mps_available or (lambda: torch.backends.mps.is_available()))()
    if requested == "auto":
        return torch.device("cuda" if cuda_ok else "mps" if mps_ok else "cpu")
    dev = torch.device(requested)
    if (dev.type == "cuda" and not cuda_ok) or (dev.type == "mps" and not mps_ok):
        raise RuntimeError(f"infer.device '{requested}' is not available on this machine; use 'auto' or 'cpu'")
    return dev


@dataclass
class _Variant:
    """One built base model and the adapters attached to it."""

    model: nn.Module
    heads: dict[str, nn.ModuleDict] = field(default_factory=dict)
    active: str | None = None
    sdpa_patched: int = 0
    batch_safe: bool = True  # TiM: every sampled token goes through the per-window generators
    identity: dict[str, frozenset[str]] = field(default_factory=dict)  # slot -> LoRA layers adding zero
    lora_layers: frozenset[str] = frozenset()  # every LoRA-wrapped encoder layer

    def set_slot(self, slot: str) -> None:
        set_lora_slot(self.model, slot, self.identity.get(slot, frozenset()))


def set_tim_sampling(model: nn.Module, temperature: float, top_p: float) -> int:
    """Set the TiM generation sampling of every TerraMindTiM module in ``model``; return how many."""
    n = 0
    for module in model.modules():
        if hasattr(module, "tim_temps") and hasattr(module, "tim_top_p"):
            module.tim_temps, module.tim_top_p = float(temperature), float(top_p)
            n += 1
    if n == 0:
        raise RuntimeError("no TerraMind TiM module found to configure; is the backbone a *_tim variant?")
    return n


def cpu_threads(configured: int | None) -> int:
    """Intra-op threads for CPU inference: the configured number, else every core this process may use.

    Set explicitly because dask's LocalCluster writes OMP_NUM_THREADS=1 into the parent process's
    environment, which would otherwise leave torch on one thread for the rest of the flow.
    """
    if configured:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class AdapterRunner:
    """Run any configured adapter; see the ``nyceo.model`` docstring for the contract."""

    def __init__(self, config: PipelineConfig, device: str = "auto") -> None:
        self.config = config
        self.infer = config.infer
        self.device = select_device(self.infer.device if device == "auto" else device)
        use_amp = self.device.type != "cpu" or self.infer.cpu_amp
        self.amp_dtype = _DTYPES[self.infer.amp_dtype] if use_amp else torch.float32
        self._variants: dict[str, _Variant] = {}
        self._files: dict[str, AdapterFiles] = {}
        self._base: tuple[object, str] | None = None
        if self.device.type == "cpu":
            torch.set_num_threads(cpu_threads(self.infer.cpu_threads))
        if self.amp_dtype == torch.float32:  # float32 means float32 (no bf16 matmul shortcut)
            torch.set_float32_matmul_precision("highest")

    # ---- registry -------------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        return list(self.infer.adapters)

    def classes(self, adapter: str) -> list[str]:
        return list(self._adapter_config(adapter).classes)

    def _adapter_config(self, adapter: str):
        if adapter not in self.infer.adapters:
            raise KeyError(f"adapter '{adapter}' is not configured; known: {self.adapter_names}")
        return self.infer.adapters[adapter]

    # ---- loading --------------------------------------------------------------------------
    def load(self, adapters: list[str] | None = None) -> None:
        """Load and check the named adapters (default: all) and their bases; no inference."""
        for name in adapters or self.adapter_names:
            self._ensure_loaded(name)

    def _variant(self, backbone: str, tim_modalities: list[str]) -> _Variant:
        if backbone not in self._variants:
            if self._base is None:
                self._base = resolve_base(self.config)
            path, _ = self._base
            model = build_model(backbone, tim_modalities, 2, self.config.acquire.timesteps,
                                seed=self.infer.random_base_seed)
            if path is not None:
                load_base(model, backbone, path)
            if is_tim(backbone):
                set_tim_sampling(model, self.infer.tim_temperature, self.infer.tim_top_p)
                per_window_sampling(model)
            patched = use_sdpa(model) if self.infer.sdpa else 0
            self._variants[backbone] = _Variant(model.to(self.device), sdpa_patched=patched,
                                                batch_safe=batch_safe_sampling(model))
        return self._variants[backbone]

    def _ensure_loaded(self, name: str) -> _Variant:
        ad = self._adapter_config(name)
        if name in self._files:
            return self._variants[ad.backbone]
        files = load_adapter_files(name, self.config)  # hashes, JSON, class count: before any model work
        variant = self._variant(ad.backbone, ad.tim_modalities)
        model = variant.model
        inject_lora(model, files.lora_config, name)
        lora = lora_state_for_slot(files, name)
        shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
        expected = {k: v for k, v in model.encoder.state_dict().items()
                    if f".lora_A.{name}." in k or f".lora_B.{name}." in k}
        check_state(files, "adapter_model.safetensors", shapes(lora), shapes(expected))
        model.encoder.load_state_dict(lora, strict=False)
        variant.identity[name] = identity_lora_layers(model, name)
        variant.lora_layers = lora_layer_names(model)
        head_expected = {f"{part}.{k}": tuple(v.shape) for part in ("neck", "decoder")
                         for k, v in getattr(model, part).state_dict().items()}
        head_expected |= {f"head.{k}": tuple(v.shape) for k, v in new_head(model, len(ad.classes)).state_dict().items()}
        check_state(files, "decoder_head.safetensors", files.head_shapes, head_expected)
        if not variant.heads:  # first adapter: it takes over the built model's own neck and decoder
            parts = nn.ModuleDict({"neck": model.neck, "decoder": model.decoder,
                                   "head": new_head(model, len(ad.classes))})
            copy_head_from_file(parts, files.paths["decoder_head.safetensors"])
            variant.heads[name] = parts
            attach_head_modules(model, parts)
            variant.active = name
        elif self.infer.heads_resident:
            parts = new_head_modules(model, len(ad.classes))
            copy_head_from_file(parts, files.paths["decoder_head.safetensors"])
            variant.heads[name] = parts.to(self.device).eval()
        else:  # only the active adapter's neck/decoder/head stay in memory (see _load_head_in_place)
            variant.heads[name] = None
        model.to(self.device).eval()  # new LoRA modules are created on CPU in training mode
        # peft makes a freshly injected slot the active one of every LoRA layer: give the layers back
        # to the adapter the runner has active (else it would run with this adapter's LoRA)
        variant.set_slot(variant.active)
        files.lora = {}  # the tensors live in the model now
        self._files[name] = files
        release_memory()  # loading temporaries: back to the OS before the next adapter or forward
        return variant

    def _activate(self, name: str) -> _Variant:
        """Make ``name`` the model's LoRA slot and neck/decoder/head: set every time (cheap), so no
        earlier load or swap can leave another adapter's part in place."""
        variant = self._ensure_loaded(name)
        variant.set_slot(name)
        if variant.heads[name] is None:
            self._load_head_in_place(variant, name)
        else:
            attach_head_modules(variant.model, variant.heads[name])
        variant.active = name
        return variant

    def _load_head_in_place(self, variant: _Variant, name: str) -> None:
        """heads_resident=false: copy the adapter's (already checked) neck/decoder/head tensors from
        its safetensors file into the one resident set, tensor by tensor (no second copy in memory)."""
        model = variant.model
        current = next(n for n, h in variant.heads.items() if h is not None)
        parts = variant.heads.pop(current)
        variant.heads[current] = None
        k = len(self._adapter_config(name).classes)
        if parts["head"].head[-1].out_channels != k:
            parts["head"] = new_head(model, k).to(self.device)
        copy_head_from_file(parts, self._files[name].paths["decoder_head.safetensors"])
        variant.heads[name] = parts
        attach_head_modules(model, parts)

    # ---- inference ------------------------------------------------------------------------
    def predict_proba(self, adapter: str, inputs: dict[str, np.ndarray],
                      origins: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
        """Softmax probabilities float32 [B, K, H, W] (CPU numpy) for raw inputs; see module doc.

        ``origins``: each window's global (y, x) origin in pixels; TiM samples a window's tokens from
        ``tim_seed`` and its origin, so its output does not depend on the batch it is in. Without
        origins window ``i`` of the batch counts as origin ``(0, i)``.
        """
        ad = self._adapter_config(adapter)
        n = next(iter(inputs.values())).shape[0] if inputs else 0
        origins = [(0, i) for i in range(n)] if origins is None else [(int(y), int(x)) for y, x in origins]
        if len(origins) != n:
            raise ValueError(f"predict_proba got {len(origins)} window origins for a batch of {n} windows")
        tensors = self._prepare(adapter, inputs)
        variant = self._activate(adapter)
        if is_tim(ad.backbone) and not variant.batch_safe:  # sequence TiM modalities: one window per forward
            parts = [self._predict(variant, {m: t[i : i + 1] for m, t in tensors.items()}, [origins[i]], True)
                     for i in range(n)]
            return np.concatenate(parts, axis=0)
        return self._predict(variant, tensors, origins, is_tim(ad.backbone))

    def predict_proba_many(self, adapters: Sequence[str], inputs: dict[str, np.ndarray],
                           origins: Sequence[tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
        """``predict_proba`` of each adapter on one batch, {adapter: probabilities}. Adapters whose
        encoder computes the same function (``nyceo.model.shared_encoder``) share one encoder pass;
        every result equals its own ``predict_proba`` bit for bit."""
        groups: dict[tuple, list[str]] = {}
        for name in adapters:
            groups.setdefault(self._encoder_key(name), []).append(name)
        out: dict[str, np.ndarray] = {}
        for group in groups.values():
            if len(group) == 1:
                out[group[0]] = self.predict_proba(group[0], inputs, origins)
            else:
                out |= self._predict_shared(group, inputs)
        return {name: out[name] for name in adapters}

    def _encoder_key(self, adapter: str) -> tuple:
        ad = self._adapter_config(adapter)
        variant = self._ensure_loaded(adapter)
        norm = tuple((m, tuple(ad.norm_means[m]), tuple(ad.norm_stds[m])) for m in sorted(ad.norm_means))
        return encoder_key(ad.backbone, is_tim(ad.backbone), adapter, variant.identity[adapter],
                           variant.lora_layers, norm)

    def _predict_shared(self, group: list[str], inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Non-TiM adapters with one encoder key: per flip, the encoder runs for the first and its
        features are replayed into the others' neck/decoder/head (the sums as in ``_predict``)."""
        tensors = self._prepare(group[0], inputs)  # same normalisation: part of the key
        flips = FLIPS if self.infer.tta_flips else ((),)
        totals: dict[str, torch.Tensor] = {}
        for dims in flips:
            x = {m: (t.flip(dims) if dims else t) for m, t in tensors.items()}
            features = None
            for name in group:
                variant = self._activate(name)
                if features is None:
                    with capture_features(variant.model) as store:
                        p = self._forward(variant, x, None)
                    features = store[0]
                else:
                    with replay_features(variant.model, features):
                        p = self._forward(variant, x, None)
                p = p.flip(dims) if dims else p
                totals[name] = p if name not in totals else totals[name] + p
        return {name: (t / len(flips)).cpu().numpy().astype(np.float32, copy=False) for name, t in totals.items()}

    def _predict(self, variant: _Variant, tensors: dict[str, torch.Tensor], origins: list[tuple[int, int]],
                 tim: bool) -> np.ndarray:
        flips = FLIPS if self.infer.tta_flips else ((),)
        total = None
        for dims in flips:
            x = {m: (t.flip(dims) if dims else t) for m, t in tensors.items()}
            p = self._forward(variant, x, origins if tim else None)
            p = p.flip(dims) if dims else p
            total = p if total is None else total + p
        return (total / len(flips)).cpu().numpy().astype(np.float32, copy=False)

    def _forward(self, variant: _Variant, x: dict[str, torch.Tensor],
                 origins: list[tuple[int, int]] | None) -> torch.Tensor:
        autocast = (torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
                    if self.amp_dtype != torch.float32 else contextlib.nullcontext())
        with torch.inference_mode(), autocast, self._tim_seeded(variant, origins):
            out = variant.model(dict(x)).output  # a fresh dict: TiM adds its generated tokens to it
        return out.float().softmax(dim=1)

    @contextlib.contextmanager
    def _tim_seeded(self, variant: _Variant, origins: list[tuple[int, int]] | None) -> Iterator[None]:
        """TiM samples its tokens (python ``random`` + torch RNG, see ``nyceo.model.tim_sampling``):
        seed the batch-wide draws from ``tim_seed`` (one window alone: from its origin too), give each
        (window, timestep) row its own generator, restore the global RNG state afterwards."""
        if origins is None:
            yield
            return
        tim_seed = self.infer.tim_seed
        seed = tim_seed if variant.batch_safe else window_seed(tim_seed, *origins[0])  # one window per forward
        rows = [window_seed(tim_seed, gy, gx, t) for gy, gx in origins
                for t in range(self.config.acquire.timesteps)]
        with seeded_rows(variant.model, seed, rows, self.device):
            yield

    def _prepare(self, adapter: str, inputs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        """Check shapes and NaNs, move to the device, normalise, repeat the DEM over time."""
        ad = self._adapter_config(adapter)
        t_len = self.config.acquire.timesteps
        check_inputs(inputs, {m: len(v) for m, v in ad.norm_means.items()}, t_len)
        out = {}
        for mod in ("S2L2A", "S1RTC", "DEM"):
            x = torch.from_numpy(np.ascontiguousarray(inputs[mod], dtype=np.float32))
            if self.device.type == "cuda":
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=True)
            if mod == "DEM":
                x = x.unsqueeze(2).expand(-1, -1, t_len, -1, -1)
            mean = torch.tensor(ad.norm_means[mod], device=self.device).view(1, -1, 1, 1, 1)
            std = torch.tensor(ad.norm_stds[mod], device=self.device).view(1, -1, 1, 1, 1)
            out[mod] = (x - mean) / std
        return out

    # ---- provenance -----------------------------------------------------------------------
    def provenance(self, adapter: str) -> dict:
        """Adapter name, source, revision, file sha256, backbone, normalization, device, dtype."""
        ad = self._adapter_config(adapter)
        variant = self._ensure_loaded(adapter)
        files = self._files[adapter]
        _, base_sha = self._base or (None, "")
        return {
            "adapter": adapter, "source": files.source.describe(), "revision": files.source.revision,
            "sha256": dict(files.sha256), "untrained": files.untrained, "backbone": ad.backbone,
            "tim_modalities": list(ad.tim_modalities), "classes": list(ad.classes),
            "base_weights": self.infer.base_weights, "base_sha256": base_sha,
            "normalization": {"means": ad.norm_means, "stds": ad.norm_stds},
            "device": str(self.device), "dtype": str(self.amp_dtype).removeprefix("torch."),
            "tta_flips": self.infer.tta_flips, "sdpa_patched_modules": variant.sdpa_patched,
            "runner_version": RUNNER_VERSION,
            "tim_seed": self.infer.tim_seed if is_tim(ad.backbone) else None,
            "tim_token_seeds": ("per window: sha256(tim_seed, window origin y/x, timestep)"
                                if is_tim(ad.backbone) else None),
            "tim_sampling": ({"temperature": self.infer.tim_temperature, "top_p": self.infer.tim_top_p}
                             if is_tim(ad.backbone) else None),
        }


def copy_head_from_file(parts: nn.ModuleDict, path) -> None:
    """Copy neck/decoder/head tensors (names already checked) from safetensors ``path`` into ``parts``,
    read straight into each tensor (no mapping of the file: its pages never join the RSS)."""
    read_safetensors_into(Path(path), parts.state_dict(keep_vars=True), f"adapter file {Path(path).name}")


def check_inputs(inputs: dict[str, np.ndarray], channels: dict[str, int], timesteps: int) -> None:
    """Raise a clear error for a missing modality, a wrong shape or NaNs."""
    want = {"S2L2A": 5, "S1RTC": 5, "DEM": 4}
    ref = None
    for mod, ndim in want.items():
        if mod not in inputs:
            raise AdapterError(f"input modality '{mod}' missing; pass S2L2A, S1RTC and DEM arrays")
        x = inputs[mod]
        c_ok = x.ndim == ndim and x.shape[1] == channels.get(mod, x.shape[1])
        t_ok = ndim == 4 or x.shape[2] == timesteps
        if not (c_ok and t_ok):
            layout = "[B,C,H,W]" if ndim == 4 else f"[B,C,T={timesteps},H,W]"
            raise AdapterError(f"input '{mod}' has shape {x.shape}; expected {layout} with "
                               f"C={channels.get(mod)}")
        key = (x.shape[0], *x.shape[-2:])
        if ref is not None and key != ref:
            raise AdapterError(f"input '{mod}' batch/size {key} differs from the other modalities' {ref}")
        ref = key
        if np.isnan(x).any():
            raise AdapterError(f"input '{mod}' holds NaN; fill gaps before predict_proba (the caller's job)")
