"""Tiled inference: stack.zarr -> pred/<adapter>.zarr (no torch here; the model runner is called)."""

from nyceo.infer.engine import Predictor
from nyceo.infer.stage import run_infer

__all__ = ["Predictor", "run_infer"]
