"""The demo's trained adapters: train every ``auto`` recipe once, cached by its training key.

``ensure_trained_demo_adapters(config)`` is called where inference builds its runner. For each
adapter with ``train.adapters.<name>.auto: true`` it computes the training key (stacks of the
training months, label identity, recipe, model settings, code and software versions;
``nyceo.train.manifest.train_key``); when the manifest records the same key and the exported files
still have the recorded sha256, nothing is trained. Otherwise it trains and exports (the first
time, or after an input changed). A training month without a stack is acquired first. The
returned configuration pins every trained adapter's files from its manifest
(``require_sha256`` stays true). Adapters without an ``auto`` recipe keep the seeded untrained
demo fallback (``nyceo.model.ensure_demo_adapters``).
"""

from __future__ import annotations

import logging
from pathlib import Path

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.io import sha256_file
from nyceo.train.manifest import pinned_config, read_manifest, train_key

log = logging.getLogger("nyceo.train")


def _acquire_if_missing(config: PipelineConfig, month: str) -> None:
    """Bring a training month's stack up to date (the acquire stage's own run, under its lock)."""
    from nyceo.acquire.contract import published_stack
    from nyceo.acquire.stage import run_acquire
    from nyceo.locks import stage_lock

    if published_stack(config, month) is not None:
        return
    log.info("train: acquiring %s (a training month of the demo adapters)", month)
    with stage_lock(config, month, "acquire"):
        run_acquire(config, month)


def current_key(config: PipelineConfig, adapter: str) -> str:
    """The training key of ``adapter`` from the stacks and labels as they are now (cheap: no label read)."""
    from nyceo.train.data import open_stacks
    from nyceo.train.labels import resolve_label_source

    tcfg = config.train.adapters[adapter]
    stores = open_stacks(config, adapter, tcfg.months)
    source = resolve_label_source(config, adapter, tcfg)
    return train_key(config, adapter, {m: s.provenance for m, s in stores.items()}, source.identity)


def is_current(config: PipelineConfig, adapter: str) -> bool:
    """The manifest records the current key and the exported files still hash as recorded."""
    manifest = read_manifest(config, adapter)
    if not manifest or manifest.get("key") != current_key(config, adapter):
        return False
    folder = Path(manifest["folder"])
    return all((folder / f).is_file() and sha256_file(folder / f) == h for f, h in manifest["sha256"].items())


def ensure_trained_demo_adapters(config: PipelineConfig) -> PipelineConfig:
    """Train the ``auto`` adapters that are missing or stale; return ``config`` with their files pinned."""
    from nyceo.model import ensure_demo_adapters
    from nyceo.train.run import train_adapter

    auto = [n for n, t in config.train.adapters.items() if t.auto and n in config.infer.adapters]
    for name in auto:
        for month in config.train.adapters[name].months:
            _acquire_if_missing(config, month)
        if is_current(config, name):
            log.info("train: %s is current (training key unchanged), not retrained", name)
            continue
        report = train_adapter(config, name)
        log.info("train: %s trained, test mIoU %.3f", name, report["metrics"]["test"]["mIoU"] or float("nan"))
    pinned = pinned_config(config)
    rest = pinned.model_copy(update={"infer": pinned.infer.model_copy(update={"adapters": {
        n: a for n, a in pinned.infer.adapters.items() if n not in auto}})})
    ensure_demo_adapters(rest)
    return pinned
