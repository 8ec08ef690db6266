"""Training LoRA adapters from labels on the chip grid (terratorch SemanticSegmentationTask + Lightning).

Public API::

    from nyceo.train.run import train_adapter, preflight
    report = train_adapter(config, "lulc_nyc", seeds=1, resume=False)   # -> folder, sha256, metrics, snippet
    from nyceo.train.demo import ensure_trained_demo_adapters
    config = ensure_trained_demo_adapters(config)   # trains `auto` adapters once (cached by key), pins them
    from nyceo.train.compare import compare_adapters
    record = compare_adapters(config, "lulc_nyc", "tim_nyc")  # per-class IoU, ΔmIoU, seed spread -> compare/

Labels: a raster, a STAC asset or a vector layer (``nyceo.train.vectors``); ``average_last: K`` exports
the average of the last K epochs' trainable weights when it validates better (``nyceo.train.soup``).

Inputs are the acquire stage's stacks (``nyceo.infer.store.StackStore`` + ``nyceo.infer.inputs.
assemble_batch``: the inference inputs and fill rules), labels a raster or STAC asset read on the chip
grid with mode resampling. Split: ``nyceo.train.split`` (spatial blocks + buffer, hash of ids).
Export: the published adapter format (``nyceo.train.export``), hashes in a manifest
(``nyceo.train.manifest``). Only this package and ``nyceo.model`` import torch; ``split``, ``labels``
and ``manifest`` do not (``manifest.pinned_config`` is cheap enough for key computations).
"""

