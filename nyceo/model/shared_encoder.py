"""Adapters whose encoder computes the same function share one encoder pass per batch.

Two adapters of one backbone variant compute identical encoder features when every one of their
LoRA layers adds exactly zero (``identity_lora_layers``: peft's initialisation, or an adapter
exported after a probe-only fit as the demo's are) and they normalise the inputs identically.
The runner then runs the encoder once for the batch (capturing its output with a forward hook)
and runs each adapter's neck/decoder/head on those same tensors (the encoder swapped for a
replay of them for the call), which is what a separate forward would compute, bit for bit.
TiM variants never share: their encoder input includes tokens sampled per adapter run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator
from typing import Any

import torch
from torch import nn


class FeatureReplay(nn.Module):
    """Stands in for the encoder: returns the captured outputs (a fresh list, the same tensors)."""

    def __init__(self, features: list[torch.Tensor]) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: Any, **_: Any) -> list[torch.Tensor]:
        return list(self.features)


@contextlib.contextmanager
def capture_features(model: nn.Module) -> Iterator[list[Any]]:
    """Within the block, every output of ``model.encoder`` is appended to the yielded list."""
    store: list[Any] = []
    handle = model.encoder.register_forward_hook(lambda _m, _a, out: store.append(out))
    try:
        yield store
    finally:
        handle.remove()


@contextlib.contextmanager
def replay_features(model: nn.Module, features: list[torch.Tensor]) -> Iterator[None]:
    """Within the block, ``model.encoder`` returns ``features`` instead of computing them."""
    encoder = model.encoder
    model.encoder = FeatureReplay(features)
    try:
        yield
    finally:
        model.encoder = encoder


def encoder_key(backbone: str, tim: bool, adapter: str, identity_layers: frozenset[str],
                lora_layers: frozenset[str], norm: tuple[Hashable, ...]) -> tuple[Hashable, ...]:
    """Adapters with equal keys compute the same encoder features for the same raw inputs."""
    if tim or identity_layers != lora_layers:
        return ("own", adapter)
    return ("base", backbone, norm)
