"""Make torchvision importable on CPU-only torch.

The only torchvision wheel for torch 2.13.0 is a CUDA build: on CPU torch its C++ ops library
cannot load, and two unguarded ``register_fake("torchvision::nms"/"qnms")`` calls then raise
``RuntimeError: operator torchvision::nms does not exist`` at import time, which breaks
``import terratorch``. Before the first ``import torchvision`` we define those two operator
schemas (no kernels) so the fake registrations succeed. Segmentation is unaffected; nms,
roi_align and image decoding stay unavailable on CPU. When the ops are already registered
(CUDA/ROCm torch with a matching torchvision) nothing is done.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIB: "torch.library.Library | None" = None


def _op_exists(name: str) -> bool:
    try:
        return torch._C._dispatch_has_kernel(f"torchvision::{name}") or bool(
            torch._C._jit_get_schemas_for_operator(f"torchvision::{name}")
        )
    except RuntimeError:
        return False


def _native_ops_load() -> bool:
    """Try torchvision's own C++ ops library (it loads on a matching CUDA/ROCm torch)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # torchvision not installed: nothing to patch
    for lib in sorted(Path(spec.origin).parent.glob("_C*.so")):
        try:
            torch.ops.load_library(str(lib))
            return True
        except (OSError, RuntimeError):
            return False
    return False


def ensure_torchvision_importable() -> list[str]:
    """Define missing torchvision operator schemas; return the names defined (empty if none)."""
    global _LIB
    if "torchvision" in sys.modules:
        return []
    missing = [n for n in _SCHEMAS if not _op_exists(n)]
    if not missing:
        return []
    if _native_ops_load():
        return []
    _LIB = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _LIB.define(_SCHEMAS[name])
    return missing
