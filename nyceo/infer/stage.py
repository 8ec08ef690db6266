"""The infer stage: stack.zarr -> pred/<adapter>.zarr for every adapter, block by block.

Loop order: blocks, then batches of windows, then adapters. Each block's stack is read once and
each batch of model inputs is assembled once for every adapter; the model (base backbone) is
loaded once for the whole run, and the adapter order alternates from batch to batch (a, b, c, then
c, b, a, ...) so consecutive batches share the active adapter: ``n_adapters - 1`` switches per
batch, each a cheap LoRA-slot/head swap in the runner. Finished blocks are recorded per adapter; a
re-run skips them, and a block is only read when some adapter still needs it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.grid import Lattice
from nyceo.infer.engine import BlockSpec, Predictor, block_windows, plan_blocks, predict_block, prefetched
from nyceo.infer.store import (
    StackBlock,
    StackStore,
    block_done,
    inputs_key,
    mark_block_done,
    open_pred_store,
    write_layers,
)
from nyceo.infer.windows import WindowPlan, stride_px
from nyceo.provenance import base_provenance

log = logging.getLogger("nyceo.infer")


def infer_config_hash(config: PipelineConfig) -> str:
    """sha256 of the settings a prediction depends on (grid + infer sections)."""
    blob = json.dumps(
        {"grid": config.grid.model_dump(mode="json"), "infer": config.infer.model_dump(mode="json")},
        sort_keys=True, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def make_runner(config: PipelineConfig) -> Predictor:
    """The real model runner: base loaded once, adapters swapped (imports torch).

    Demo adapters a config names (``demo_seed`` + local folder) are written first when missing.
    """
    from nyceo.model import AdapterRunner, ensure_demo_adapters

    ensure_demo_adapters(config)
    return AdapterRunner(config, device=config.infer.device)


def resolve_adapters(config: PipelineConfig, runner: Predictor, adapters: list[str] | None) -> list[str]:
    known = list(getattr(runner, "adapter_names", None) or config.infer.adapters)
    wanted = list(adapters) if adapters else known
    unknown = [a for a in wanted if a not in known]
    if unknown or not wanted:
        raise ValueError(
            f"unknown adapter(s) {unknown or wanted}; configured adapters are {known} (infer.adapters in the config)"
        )
    return wanted


@dataclass
class _Target:
    """One adapter's output store, opened for writing."""

    adapter: str
    path: str
    key: str
    group: Any


def _open_targets(
    config: PipelineConfig, month: str, stack: StackStore, runner: Predictor, adapters: list[str]
) -> list[_Target]:
    ihash = infer_config_hash(config)
    plan = config.infer
    targets = []
    for adapter in adapters:
        model_prov = runner.provenance(adapter)
        key = inputs_key(stack.provenance, model_prov, ihash)
        prov = base_provenance(
            config, "infer", month=month, adapter=adapter, model=model_prov, stack=stack.provenance,
            infer_config_hash=ihash, inputs_key=key,
            windows={
                "window_px": stack.area.lattice.chip_size_px,
                "overlap_fraction": plan.overlap_fraction,
                "stride_px": stride_px(stack.area.lattice.chip_size_px, plan.overlap_fraction),
                "blend_taper": plan.blend_taper, "blend_floor": plan.blend_floor,
                "nodata_policy": plan.nodata_policy, "fill": "window band mean, else infer.fill_fallback",
            },
        )
        path = paths.pred_store(config, month, adapter)
        group = open_pred_store(path, stack.area, list(runner.classes(adapter)), prov, key, config.grid.crs)
        targets.append(_Target(adapter, path, key, group))
    return targets


def _run_block(
    data: StackBlock, plan: WindowPlan, spec: BlockSpec, todo: list[_Target], runner: Predictor,
    config: PipelineConfig,
) -> int:
    """Predict and write one block (read once) for every adapter in ``todo``; return its window count."""
    windows = block_windows(plan, spec, data)
    if windows:
        layers = predict_block(runner, [t.adapter for t in todo], plan, spec, data, windows, config.infer)
        for target in todo:
            write_layers(target.group, spec.box, layers[target.adapter])
    for target in todo:
        mark_block_done(target.path, spec.block_id, target.key, len(windows))
    return len(windows)


def run_infer(
    config: PipelineConfig,
    month: str,
    adapters: list[str] | None = None,
    runner: Predictor | None = None,
    block_ids: list[str] | None = None,
) -> dict[str, str]:
    """Predict every (or the listed) adapter over the month's stack; return {adapter: pred store path}.

    ``block_ids`` restricts the run to some blocks (parallel workers each take a share; every
    worker opens the same stores, which are created once and never rebuilt while inputs agree).
    """
    stack = StackStore(paths.stack_store(config, month), Lattice.from_config(config.grid))
    runner = runner if runner is not None else make_runner(config)
    names = resolve_adapters(config, runner, adapters)
    targets = _open_targets(config, month, stack, runner, names)
    plan = WindowPlan.for_area(stack.area, config.infer.overlap_fraction)
    specs = plan_blocks(stack.area, config.infer.block_size_chips or config.grid.block_size_chips)
    if block_ids is not None:
        unknown = sorted(set(block_ids) - {s.block_id for s in specs})
        if unknown:
            raise ValueError(f"block(s) {unknown} are not in the stack's area for {month}; known: {[s.block_id for s in specs]}")
        specs = [s for s in specs if s.block_id in set(block_ids)]
    t0, n_windows = time.perf_counter(), 0
    work = [(spec, [t for t in targets if not block_done(t.path, spec.block_id, t.key)]) for spec in specs]
    to_read = [spec for spec, todo in work if todo]
    read = lambda spec: stack.read(spec.read_box)  # noqa: E731
    reads = prefetched(read, to_read) if config.infer.prefetch_blocks else map(read, to_read)
    try:
        for i, (spec, todo) in enumerate(work):
            if todo:
                n_windows += _run_block(next(reads), plan, spec, todo, runner, config)
            log.info(
                "infer %s: block %s %s (%d/%d blocks, %d windows, %.1f s)", month, spec.block_id,
                "done" if todo else "already done, skipped", i + 1, len(specs), n_windows, time.perf_counter() - t0,
            )
    finally:
        if hasattr(reads, "close"):
            reads.close()
    return {t.adapter: t.path for t in targets}
