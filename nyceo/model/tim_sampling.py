"""TiM token sampling that depends on each window's global position, never on its batch.

terratorch's ``GenerationSampler`` draws every TiM token with one ``torch.multinomial`` over the
flattened ``(batch x timestep x token)`` rows from the global torch RNG, so a window's tokens
depend on how many rows precede it: on its position in the batch, hence on ``infer.batch_size``
and the block layout. ``per_window_sampling`` rebinds ``sample_tokens_batched`` of the sampler
*instances* in a built model (site-packages is never edited): the filtering (temperature, top-p,
top-k) is terratorch's own, but each row's uniform draw comes from a generator of its own window
and timestep, seeded by ``window_seed(tim_seed, gy, gx, t)``. The draw is inverse-CDF sampling,
the same distribution as ``torch.multinomial``. Everything else TiM draws at random (the ROAR
decoding order) has no batch axis and is fixed by ``tim_seed``; the runner seeds it per forward.

Sequence TiM modalities (captions, coordinates) sample inline in terratorch; for them the runner
predicts one window per forward instead (``batch_safe_sampling`` says which applies).
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import types
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

_GENERATORS = "_nyceo_row_generators"


def window_seed(tim_seed: int, gy: int, gx: int, timestep: int = 0) -> int:
    """A 63-bit seed from ``tim_seed`` and a window's global origin (pixels) and timestep."""
    digest = hashlib.sha256(f"nyceo-tim:{int(tim_seed)}:{int(gy)}:{int(gx)}:{int(timestep)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _samplers(model: nn.Module) -> list[nn.Module]:
    from terratorch.models.backbones.terramind.model.generate import GenerationSampler

    return [m for m in model.modules() if isinstance(m, GenerationSampler)]


def _sample_tokens_batched(self: nn.Module, logits: torch.Tensor, temperature: float = 1.0, top_k: float = 0.0,
                           top_p: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """terratorch's sample_tokens_batched with one generator per row of the batch (see module doc)."""
    gens = getattr(self, _GENERATORS, None)
    if gens is None or logits.ndim != 3 or np.isclose(temperature, 0, atol=1e-10):
        return type(self).sample_tokens_batched(self, logits, temperature, top_k, top_p)
    b, n, v = logits.shape
    if b != len(gens):
        raise RuntimeError(f"TiM sampler got {b} batch rows but {len(gens)} per-window generators were set")
    flat = self.top_k_top_p_filtering(logits.reshape(b * n, v), top_k, top_p)
    probs = torch.softmax(flat / temperature, dim=-1)
    cdf = probs.double().cumsum(dim=-1)
    u = torch.cat([torch.rand(n, generator=g, dtype=torch.float64, device=g.device) for g in gens])
    u = u.to(cdf.device) * cdf[:, -1]
    samples = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(max=v - 1)
    sampled = probs.gather(1, samples[:, None])[:, 0]
    return samples.reshape(b, n), sampled.reshape(b, n)


def per_window_sampling(model: nn.Module) -> int:
    """Rebind the TiM samplers of ``model`` to per-row generators; return how many were patched."""
    samplers = _samplers(model)
    for s in samplers:
        s.sample_tokens_batched = types.MethodType(_sample_tokens_batched, s)
        setattr(s, _GENERATORS, None)
    return len(samplers)


def batch_safe_sampling(model: nn.Module) -> bool:
    """Whether every TiM modality of ``model`` is an image modality (sampled through the patched path)."""
    for m in model.modules():
        if hasattr(m, "tim_modalities") and hasattr(m, "image_modalities"):
            if any(m.mod_name_mapping[t] not in m.image_modalities for t in m.tim_modalities):
                return False
    return True


@contextlib.contextmanager
def row_generators(model: nn.Module, seeds: Sequence[int], device: torch.device) -> Iterator[None]:
    """Give the patched samplers one generator per flattened batch row (window-major, then timestep)."""
    samplers = _samplers(model)
    gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
    for s in samplers:
        setattr(s, _GENERATORS, gens)
    try:
        yield
    finally:
        for s in samplers:
            setattr(s, _GENERATORS, None)


@contextlib.contextmanager
def seeded_rows(model: nn.Module, seed: int, rows: Sequence[int], device: torch.device) -> Iterator[None]:
    """Seed TiM's batch-wide draws (python ``random`` + torch) from ``seed``, give each batch row its own
    generator (``rows``), and restore the global RNG state afterwards."""
    state = random.getstate()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
            row_generators(model, rows, device):
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(state)
