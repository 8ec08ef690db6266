"""TerraMind + LoRA adapters. The only package of nyceo that imports torch."""

from nyceo.model.compat import ensure_torchvision_importable

ensure_torchvision_importable()
