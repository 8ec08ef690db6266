"""The infer stage: stack.zarr -> pred/<adapter>.zarr for every adapter, block by block.

Loop order: blocks, then batches of windows, then adapters. Each block's stack is read once and
each batch of model inputs is assembled once for every adapter; the model (base backbone) is
loaded once for the whole run, and the adapter order alternates from batch to batch (a, b, c, then
c, b, a, ...) so consecutive batches share the active adapter: ``n_adapters - 1`` switches per
batch, each a cheap LoRA-slot/head swap in the runner. Finished blocks are recorded per adapter; a
re-run skips them, and a block is only read when some adapter still needs it.

Each adapter's store is built as ``pred/<adapter>@<k16>.zarr`` (k16: its pred key, see
``nyceo.keys.pred_key``) and published as ``pred/<adapter>.zarr`` only when every block is done, so
a rebuild never touches the published store and downstream stages only ever see complete ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from nyceo import chunks, paths, versioned
from nyceo.config import PipelineConfig
from nyceo.grid import Lattice
from nyceo.infer.engine import BlockSpec, Predictor, block_windows, plan_blocks, predict_block, prefetched
from nyceo.infer.store import (
    StackBlock,
    StackChunkError,
    StackStore,
    StackStoreError,
    block_done,
    block_markers,
    mark_block_done,
    open_pred_store,
    write_layers,
)
from nyceo.infer.windows import WindowPlan, stride_px
from nyceo.keys import pred_key, runner_pred_key
from nyceo.provenance import base_provenance

log = logging.getLogger("nyceo.infer")
PRED_NDIM = {"class_map": 2, "probability": 3, "confidence": 2}


def make_runner(config: PipelineConfig) -> Predictor:
    """The real model runner: base loaded once, adapters swapped (imports torch).

    Adapters with an ``auto`` training recipe (the demo) are trained first when missing or stale
    (cached by their training key) and pinned from their manifests; other demo adapters
    (``demo_seed`` + local folder) are written when missing.
    """
    from nyceo.model import AdapterRunner
    from nyceo.train.demo import ensure_trained_demo_adapters

    config = ensure_trained_demo_adapters(config)
    return AdapterRunner(config, device=config.infer.device)


def resolve_adapters(config: PipelineConfig, runner: Predictor | None, adapters: list[str] | None) -> list[str]:
    known = list(getattr(runner, "adapter_names", None) or config.infer.adapters)
    wanted = list(adapters) if adapters else known
    unknown = [a for a in wanted if a not in known]
    if unknown or not wanted:
        raise ValueError(
            f"unknown adapter(s) {unknown or wanted}; configured adapters are {known} (infer.adapters in the config)"
        )
    return wanted


def open_stack(config: PipelineConfig, month: str) -> tuple[StackStore, str]:
    """The published stack of ``month`` for this configuration and its content key, or a clear error."""
    from nyceo.acquire.contract import damaged_blocks, published_stack

    found = published_stack(config, month)
    if found is None:
        raise StackStoreError(
            f"no complete stack of {month} for this configuration under {paths.month_dir(config, month)}; "
            f"run `nyceo acquire --month {month} -c CONFIG` first")
    damaged = damaged_blocks(config, month)
    if damaged:  # a missing chunk would read as nodata: refuse rather than predict nodata
        raise StackStoreError(
            f"stack {found[0]} is damaged: chunk files missing or changed in block(s) "
            f"{ {bid: files[:3] for bid, files in sorted(damaged.items())} }; run `nyceo acquire --month {month} "
            "-c CONFIG`, which acquires those blocks again")
    return StackStore(found[0], Lattice.from_config(config.grid)), found[1]


@dataclass
class _Target:
    """One adapter's output store (a build, published when complete), opened for writing."""

    adapter: str
    final: str
    path: str
    key: str
    group: Any


def _open_targets(config: PipelineConfig, month: str, stack: StackStore, stack_key: str, runner: Predictor,
                  adapters: list[str]) -> list[_Target]:
    from nyceo.infer.contract import adapter_hashes

    plan = config.infer
    targets = []
    for adapter in adapters:
        model_prov = runner.provenance(adapter)
        key = (pred_key(stack_key, config, adapter, adapter_hashes(config, adapter)) if adapter in config.infer.adapters
               else runner_pred_key(stack_key, config, adapter, model_prov))
        final = paths.pred_store(config, month, adapter)
        if versioned.published_key(final) == key:
            continue  # already published with this key: nothing to do
        prov = base_provenance(
            config, "infer", month=month, adapter=adapter, model=model_prov, stack=stack.provenance,
            inputs_key=key, stack_key=stack_key,
            windows={
                "window_px": stack.area.lattice.chip_size_px,
                "overlap_fraction": plan.overlap_fraction,
                "stride_px": stride_px(stack.area.lattice.chip_size_px, plan.overlap_fraction),
                "blend_taper": plan.blend_taper, "blend_floor": plan.blend_floor,
                "nodata_policy": plan.nodata_policy, "fill": "window band mean, else infer.fill_fallback",
            },
        )
        path = versioned.version_path(final, key)
        group = open_pred_store(path, stack.area, list(runner.classes(adapter)), prov, key, config.grid.crs)
        targets.append(_Target(adapter, final, path, key, group))
    return targets


def _run_block(data: StackBlock, plan: WindowPlan, spec: BlockSpec, todo: list[_Target], runner: Predictor,
               config: PipelineConfig, area: Any) -> int:
    """Predict and write one block (read once) for every adapter in ``todo``; return its window count."""
    windows = block_windows(plan, spec, data)
    if windows:
        layers = predict_block(runner, [t.adapter for t in todo], plan, spec, data, windows, config.infer)
        for target in todo:
            write_layers(target.group, spec.box, layers[target.adapter])
    size = area.lattice.chip_size_px
    y0, y1, x0, x1 = spec.box
    chips_rc = [(r, c) for r in range(y0 // size, y1 // size) for c in range(x0 // size, x1 // size)]
    for target in todo:
        mark_block_done(target.path, spec.block_id, target.key, len(windows),
                        chunks.manifest(target.path, PRED_NDIM, chips_rc))
    return len(windows)


def _publish_finished(targets: list[_Target], specs: list[BlockSpec]) -> None:
    ids = {s.block_id for s in specs}
    for t in targets:
        done = {b for b, m in block_markers(t.path).items() if m.get("inputs_key") == t.key}
        if ids <= done:
            versioned.publish(t.final, t.key, build=t.path)
            log.info("infer: %s published (%s)", t.final, t.key[:12])


def run_infer(
    config: PipelineConfig,
    month: str,
    adapters: list[str] | None = None,
    runner: Predictor | None = None,
    block_ids: list[str] | None = None,
) -> dict[str, str]:
    """Predict every (or the listed) adapter over the month's stack; return {adapter: pred store path}.

    ``block_ids`` restricts the run to some blocks (parallel workers each take a share; every
    worker opens the same builds); a store is published once all its blocks are done.
    """
    stack, stack_key = open_stack(config, month)
    names = resolve_adapters(config, runner, adapters)
    finals = {a: paths.pred_store(config, month, a) for a in names}
    if runner is None and _all_current(config, stack_key, names, finals):
        return finals  # nothing to predict: the model is never loaded
    runner = runner if runner is not None else make_runner(config)
    targets = _open_targets(config, month, stack, stack_key, runner, names)
    all_specs = plan_blocks(stack.area, config.infer.block_size_chips or config.grid.block_size_chips)
    specs = _select_blocks(all_specs, block_ids, month)
    if targets:
        _predict_blocks(config, month, stack, runner, targets, specs)
        _publish_finished(targets, all_specs)
    return finals


def _all_current(config: PipelineConfig, stack_key: str, names: list[str], finals: dict[str, str]) -> bool:
    from nyceo.infer.contract import adapter_hashes

    return all(versioned.published_key(finals[a]) == pred_key(stack_key, config, a, adapter_hashes(config, a))
               for a in names)


def _select_blocks(specs: list[BlockSpec], block_ids: list[str] | None, month: str) -> list[BlockSpec]:
    if block_ids is None:
        return specs
    unknown = sorted(set(block_ids) - {s.block_id for s in specs})
    if unknown:
        raise ValueError(f"block(s) {unknown} are not in the stack's area for {month}; known: {[s.block_id for s in specs]}")
    return [s for s in specs if s.block_id in set(block_ids)]


def _predict_blocks(config: PipelineConfig, month: str, stack: StackStore, runner: Predictor,
                    targets: list[_Target], specs: list[BlockSpec]) -> None:
    plan = WindowPlan.for_area(stack.area, config.infer.overlap_fraction)
    t0, n_windows = time.perf_counter(), 0
    work = [(spec, [t for t in targets if not block_done(t.path, spec.block_id, t.key)]) for spec in specs]
    to_read = [spec for spec, todo in work if todo]
    read = lambda spec: (spec, stack.read(spec.read_box))  # noqa: E731
    reads = prefetched(read, to_read) if config.infer.prefetch_blocks else map(read, to_read)
    try:
        for i, (spec, todo) in enumerate(work):
            if todo:
                n_windows += _run_block(_next_read(reads, config, month, spec), plan, spec, todo, runner, config,
                                        stack.area)
            log.info(
                "infer %s: block %s %s (%d/%d blocks, %d windows, %.1f s)", month, spec.block_id,
                "done" if todo else "already done, skipped", i + 1, len(specs), n_windows, time.perf_counter() - t0,
            )
    finally:
        if hasattr(reads, "close"):
            reads.close()


def _next_read(reads: Any, config: PipelineConfig, month: str, spec: BlockSpec) -> StackBlock:
    """The next prefetched block; a damaged stack chunk invalidates its acquisition block and raises
    an error naming the chunk, the chip and the command that re-acquires it."""
    try:
        got_spec, data = next(reads)
    except StackChunkError as exc:
        from nyceo.acquire.contract import block_of_chip, invalidate_blocks

        block = block_of_chip(config, month, exc.chip_id) if exc.chip_id else None
        fix = invalidate_blocks(config, month, [block]) if block else f"nyceo acquire --month {month} -c CONFIG"
        raise StackStoreError(f"{exc}. Acquisition block {block} was marked for re-acquisition; run `{fix}` "
                              f"(or `nyceo run --month {month}`) to rewrite it, then infer again") from exc
    assert got_spec.block_id == spec.block_id
    return data
