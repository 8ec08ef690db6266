"""Block-wise tiled inference: read a block + halo once, run its windows, blend, quantize.

A block is a lattice-aligned square of chips (``grid.block_size_chips``) clipped to the area. Its
*interior* is the pixels of its own chips; the windows run for it are every window (on the global
window lattice) that intersects the interior; they reach at most one window (= one chip) beyond
it, so the block reads the stack over its interior plus a one-chip halo, clipped to the area, with
chunk-aligned reads. Only the interior is blended and written, so blocks never write the same
chunk and can run in parallel, and the memory used depends on the block size, never on the area.
Windows are added in global raster order, so a pixel's value does not depend on the block layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import pandas as pd

from nyceo.config import InferConfig
from nyceo.grid import AreaGrid, blocks_for_chips, chip_id, parse_chip_id
from nyceo.infer.blend import BlendAccumulator, quantize, taper_2d
from nyceo.infer.inputs import assemble_batch, pixels_with_s2, window_has_data
from nyceo.infer.store import StackBlock
from nyceo.infer.windows import Window, WindowPlan

T = TypeVar("T")
R = TypeVar("R")
_END = object()


@runtime_checkable
class Predictor(Protocol):
    """What the engine needs from a model (``nyceo.model.AdapterRunner`` or a stand-in)."""

    def predict_proba(
        self, adapter: str, inputs: dict[str, np.ndarray], origins: Sequence[tuple[int, int]] | None = None
    ) -> np.ndarray:
        """``{S2L2A: [B,12,T,H,W], S1RTC: [B,2,T,H,W], DEM: [B,1,H,W]}`` -> float32 [B, K, H, W].

        ``origins``: each window's global (y, x) top-left pixel. A model that draws random numbers
        (TiM token sampling) must derive them from these, never from the batch, so a window's output
        does not depend on ``infer.batch_size`` or the block layout.
        """
        ...

    def classes(self, adapter: str) -> list[str]:
        """Class names in output-channel order."""
        ...

    def provenance(self, adapter: str) -> dict[str, Any]:
        """Model, adapter and weights identity (recorded in the prediction store)."""
        ...


@dataclass(frozen=True)
class BlockSpec:
    """One processing block: its id, its interior and its read extent, in area pixels (y0, y1, x0, x1)."""

    block_id: str
    box: tuple[int, int, int, int]
    read_box: tuple[int, int, int, int]


def plan_blocks(area: AreaGrid, block_size_chips: int) -> list[BlockSpec]:
    """Lattice-aligned blocks over every chip of the area, each with a one-chip halo read extent."""
    rows, cols = np.meshgrid(
        np.arange(area.row0, area.row0 + area.n_rows), np.arange(area.col0, area.col0 + area.n_cols), indexing="ij"
    )
    chips = pd.DataFrame({"row": rows.ravel(), "col": cols.ravel()})
    chips["chip_id"] = [chip_id(r, c) for r, c in zip(chips["row"], chips["col"])]
    size = area.lattice.chip_size_px
    specs = []
    for block in blocks_for_chips(chips, block_size_chips):
        rc = np.array([parse_chip_id(c) for c in block.chip_ids])
        y0, x0 = (rc.min(axis=0) - (area.row0, area.col0)) * size
        y1, x1 = (rc.max(axis=0) + 1 - (area.row0, area.col0)) * size
        read = (max(0, y0 - size), min(area.height_px, y1 + size), max(0, x0 - size), min(area.width_px, x1 + size))
        specs.append(BlockSpec(block.block_id, (int(y0), int(y1), int(x0), int(x1)), tuple(int(v) for v in read)))
    return specs


def block_windows(plan: WindowPlan, spec: BlockSpec, data: StackBlock) -> list[Window]:
    """Windows intersecting the block interior that hold at least one valid S2 pixel."""
    ry0, _, rx0, _ = spec.read_box
    out = []
    for win in plan.windows_in(*spec.box):
        oy, ox = plan.local_origin(win)
        if window_has_data(data, oy - ry0, ox - rx0, win.size_px):
            out.append(win)
    return out


def _batches(items: list[Window], size: int) -> Iterator[list[Window]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def prefetched(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn(item)`` for each item in order, the next one computed in a background thread.

    Overlaps reading / input assembly (numpy and zarr release the GIL) with the model forward; at
    most two results are alive at once.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nyceo-infer-prefetch") as pool:
        pending = iter(items)
        first = next(pending, _END)
        future = pool.submit(fn, first) if first is not _END else None
        while future is not None:
            result = future.result()
            nxt = next(pending, _END)
            future = pool.submit(fn, nxt) if nxt is not _END else None
            yield result
            del result


def predict_block(
    runner: Predictor,
    adapters: list[str],
    plan: WindowPlan,
    spec: BlockSpec,
    data: StackBlock,
    windows: list[Window],
    cfg: InferConfig,
) -> dict[str, dict[str, np.ndarray]]:
    """Blend every adapter's window predictions over the block interior; {adapter: uint8 layers}.

    Each batch of windows is assembled once and run through every adapter (in alternating order,
    so consecutive batches share the active adapter); one accumulator per adapter. A runner with
    ``predict_proba_many(adapters, inputs, origins) -> {adapter: probs}`` gets the whole batch at
    once (it may share encoder passes between adapters; results must equal ``predict_proba``'s).
    """
    size = plan.window_px
    weights = taper_2d(size, cfg.blend_taper, cfg.blend_floor)
    n_classes = {a: len(runner.classes(a)) for a in adapters}
    accs = {a: BlendAccumulator(n_classes[a], spec.box, weights) for a in adapters}
    ry0, _, rx0, _ = spec.read_box
    batches = list(_batches(windows, cfg.batch_size))
    predict_many = getattr(runner, "predict_proba_many", None)  # optional: shares encoder passes

    def assemble(batch: list[Window]) -> dict[str, np.ndarray]:
        local = [(oy - ry0, ox - rx0) for oy, ox in map(plan.local_origin, batch)]
        return assemble_batch(data, local, size, cfg.fill_fallback)

    for i, (batch, inputs) in enumerate(zip(batches, prefetched(assemble, batches))):
        origins = [plan.local_origin(w) for w in batch]
        global_origins = [(w.gy, w.gx) for w in batch]
        order = adapters if i % 2 == 0 else adapters[::-1]
        results = (predict_many(order, inputs, global_origins) if predict_many is not None
                   else {a: runner.predict_proba(a, inputs, global_origins) for a in order})
        for adapter in order:
            probs = np.asarray(results.pop(adapter), dtype=np.float32)
            if probs.shape != (len(batch), n_classes[adapter], size, size):
                raise ValueError(
                    f"adapter '{adapter}' returned probabilities of shape {probs.shape}, expected "
                    f"{(len(batch), n_classes[adapter], size, size)} (batch, classes, y, x); check the runner's class list"
                )
            for p, (oy, ox) in zip(probs, origins):
                accs[adapter].add(p, oy, ox)
    return {adapter: _finish(acc, spec, data, cfg) for adapter, acc in accs.items()}


def _finish(acc: BlendAccumulator, spec: BlockSpec, data: StackBlock, cfg: InferConfig) -> dict[str, np.ndarray]:
    """The block's blended probabilities quantized; pixels without S2 are nodata under policy "mask"."""
    prob, covered = acc.result()
    if cfg.nodata_policy == "mask":
        ry0, _, rx0, _ = spec.read_box
        y0, y1, x0, x1 = spec.box
        covered = covered & pixels_with_s2(data)[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0]
    return quantize(prob, covered)


def predict_single_window_blocks(
    runner: Predictor, adapter: str, plan: WindowPlan, items: Sequence[tuple[BlockSpec, StackBlock, Window]],
    cfg: InferConfig,
) -> list[dict[str, np.ndarray]]:
    """``predict_block`` for many blocks of one window each (e.g. scattered sample chips), their
    windows batched together (``cfg.batch_size``) instead of one forward per block. Each block is
    blended and quantized as ``predict_block`` does it alone; the runner's output does not depend on
    the batch a window is in (TiM draws are seeded by the window's global origin)."""
    size = plan.window_px
    weights = taper_2d(size, cfg.blend_taper, cfg.blend_floor)
    k = len(runner.classes(adapter))
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(items), cfg.batch_size):
        part = items[start : start + cfg.batch_size]
        local = [(plan.local_origin(w), spec.read_box) for spec, _, w in part]
        inputs = [assemble_batch(data, [(oy - box[0], ox - box[2])], size, cfg.fill_fallback)
                  for (_, data, _), ((oy, ox), box) in zip(part, local)]
        batch = {m: np.concatenate([x[m] for x in inputs]) for m in inputs[0]}
        probs = np.asarray(runner.predict_proba(adapter, batch, [(w.gy, w.gx) for _, _, w in part]), dtype=np.float32)
        for p, (spec, data, _), ((oy, ox), _) in zip(probs, part, local):
            acc = BlendAccumulator(k, spec.box, weights)
            acc.add(p, oy, ox)
            out.append(_finish(acc, spec, data, cfg))
    return out
