"""TerraMind + LoRA adapters. The only package of nyceo that imports torch.

Public API (used by the tiled inference engine)::

    from nyceo.model import AdapterRunner
    runner = AdapterRunner(config, device="auto")   # cheap: nothing is loaded until used
    runner.adapter_names            -> list[str]     # infer.adapters, in config order
    runner.classes(adapter)         -> list[str]     # output-channel order, from the config
    runner.load([adapter, ...])     -> None          # optional: load + check everything up front
    runner.predict_proba(adapter, inputs, origins=None) -> np.ndarray float32 [B, K, H, W], softmax, CPU
                                                     # origins: each window's global (y, x) pixel origin
    runner.provenance(adapter)      -> dict          # name, source, revision, file sha256, backbone,
                                                     # normalization, device, dtype, ...

``inputs`` = ``{"S2L2A": float32 [B,12,T,H,W] harmonized L2A digital numbers (no +1000 offset),
"S1RTC": float32 [B,2,T,H,W] backscatter in dB, "DEM": float32 [B,1,H,W] metres}`` with
T = acquire.timesteps (4) and H = W = 224. The runner applies the adapter's normalization and
repeats the DEM over T. NaN is refused: fill gaps before calling (e.g. from another timestep, or
with the adapter's normalization mean, which normalises to 0). Batching is the caller's job.

Device: ``infer.device`` (auto = CUDA/ROCm, then Apple MPS, then CPU). On a GPU the forward
runs under autocast ``infer.amp_dtype`` (bf16 by default); CPU runs float32 unless
``infer.cpu_amp``. ``infer.tta_flips`` averages the 4 flips of the y/x axes (un-flipped).

Determinism: a window's output depends only on its inputs, the adapter and (TiM) ``tim_seed`` and
its global origin; never on which adapters were loaded or ran before, their order, the batch size or
the batch position. Every activation sets the adapter's LoRA slot and neck/decoder/head (peft makes
each newly injected slot active: loading must not change the active adapter), and TiM draws each
(window, timestep)'s tokens from its own generator (``nyceo.model.tim_sampling``).

Loading: one base model per backbone variant per process (``terramind_v1_base`` and, for TiM,
``terramind_v1_base_tim``), adapters swapped in place (peft LoRA slots + per-adapter
neck/decoder/head modules). Adapter tensors come only from safetensors, the base checkpoint only
through ``torch.load(weights_only=True)``; hashes, tensor names/shapes and class counts are
checked before any inference (``nyceo.model.adapters``, ``nyceo.model.weights``).

Demo: ``ensure_demo_adapters(config)`` writes the seeded, untrained demo adapters a config names
(``demo_seed`` + local folder) when they are missing.
"""

from nyceo.model.compat import ensure_torchvision_importable

ensure_torchvision_importable()

from nyceo.model.adapters import AdapterError  # noqa: E402
from nyceo.model.demo import ensure_demo_adapters, make_demo_adapter  # noqa: E402
from nyceo.model.runner import AdapterRunner, select_device  # noqa: E402
from nyceo.model.hub import fetch_pins  # noqa: E402
from nyceo.model.weights import WeightsError  # noqa: E402

__all__ = [
    "AdapterError", "AdapterRunner", "WeightsError", "ensure_demo_adapters", "fetch_pins",
    "make_demo_adapter", "select_device",
]
