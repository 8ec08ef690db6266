"""Fused attention: route terratorch's unfused TerraMind attention through SDPA.

terratorch 1.2.11 computes its plain ``Attention``/``CrossAttention`` with
``torch.nn.functional.scaled_dot_product_attention`` already; the q/k-normalised variants
(``NormAttention``, ``NormCrossAttention``, used when a model is built with ``qk_norm=True``)
still compute ``softmax(q·kᵀ·scale)·v`` explicitly. ``use_sdpa`` rebinds the ``forward`` of those
module *instances* in a built model (site-packages is never edited). Modules with
``allow_zero_attn`` (softmax1) have no SDPA equivalent and are left alone.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn


def _bool_mask(mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """TerraMind masks are True = do not attend; SDPA's boolean masks are True = attend."""
    if mask is None:
        return None
    return ~mask.unsqueeze(1).to(dtype=torch.bool, device=device)


def _norm_attention_forward(self: nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, C = x.shape
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    y = F.scaled_dot_product_attention(
        q, k, v, attn_mask=_bool_mask(mask, x.device),
        dropout_p=self.attn_drop.p if self.training else 0.0, scale=self.scale,
    )
    return self.proj_drop(self.proj(y.transpose(1, 2).reshape(B, N, C)))


def _norm_cross_attention_forward(self: nn.Module, x: torch.Tensor, context: torch.Tensor,
                                  mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, C = x.shape
    _, M, _ = context.shape
    q = self.q(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
    kv = self.kv(context).reshape(B, M, 2, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    k, v = kv[0], kv[1]
    q, k = self.q_norm(q), self.k_norm(k)
    y = F.scaled_dot_product_attention(
        q, k, v, attn_mask=_bool_mask(mask, x.device),
        dropout_p=self.attn_drop.p if self.training else 0.0, scale=self.scale,
    )
    return self.proj_drop(self.proj(y.transpose(1, 2).reshape(B, N, C)))


_PATCHES = {
    "NormAttention": _norm_attention_forward,
    "NormCrossAttention": _norm_cross_attention_forward,
}


def use_sdpa(model: nn.Module) -> int:
    """Rebind unfused attention modules of ``model`` to SDPA; return how many were patched."""
    from terratorch.models.backbones.terramind.model import tm_utils

    patched = 0
    for module in model.modules():
        for cls_name, fwd in _PATCHES.items():
            cls = getattr(tm_utils, cls_name, None)
            if cls is not None and type(module) is cls and not getattr(module, "allow_zero_attn", False):
                module.forward = types.MethodType(fwd, module)
                patched += 1
    return patched
