"""Measure the null ("same ground, same period, different inputs") with the real model.

Method ``split_timesteps``: on a seeded sample of the month's chips, the month is predicted twice
by the same runner, once from the first half of its timesteps and once from the second half
({0,1} vs {2,3} of four), each half repeated to the stack's length so the model sees its usual
input shape. Both predictions describe the same ground in the same month, so every difference is
noise: other scenes, clouds and fills, view geometry, and the model's response to them. It is a
fair and slightly conservative null for a month-to-month comparison of 4-date composites: each
half has half the dates, so its noise is larger, not smaller. It does not contain seasonal
(phenology) change, which year-over-year pairs avoid by design and month-over-month pairs may
show as real change of the surface. Chips whose two halves share a date (months with fewer
distinct dates than timesteps) are counted in the result.

Windows are the chips themselves (no overlap blending) for both halves alike. No torch here: the
runner comes from ``nyceo.infer.stage.make_runner`` (which imports ``nyceo.model`` lazily) unless
one is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from nyceo.change.gate import MonthLayers
from nyceo.config import PipelineConfig
from nyceo.grid import Lattice, chip_id
from nyceo.infer.engine import BlockSpec, Predictor, block_windows, predict_single_window_blocks
from nyceo.infer.store import StackBlock, StackStore
from nyceo.infer.windows import WindowPlan


@dataclass(frozen=True)
class NullSample:
    """Two predictions of the same pixels (flattened over the sampled chips) and their area labels."""

    half_a: MonthLayers
    half_b: MonthLayers
    area_index: np.ndarray  # int16 (N,): index into area_slugs, -1 outside every area
    area_slugs: list[str]
    chips: list[str]
    chips_sharing_dates: int


def sample_chips(valid_chips: list[tuple[int, int]], fraction: float, min_chips: int, seed: int) -> list[tuple[int, int]]:
    """A seeded sample (sorted) of ``fraction`` of the chips, at least ``min_chips`` when available."""
    n = min(len(valid_chips), max(min_chips, int(round(fraction * len(valid_chips)))))
    order = np.random.default_rng(seed).permutation(len(valid_chips))[:n]
    return sorted(valid_chips[i] for i in order)


def split_halves(data: StackBlock) -> tuple[StackBlock, StackBlock]:
    """The block seen through its first and its second half of timesteps, each tiled to T steps."""
    t = data.s2.shape[0]
    if t < 2:
        raise ValueError(f"the stack has {t} timestep(s); the split-timesteps null needs at least 2")
    halves = []
    for steps in (np.arange(0, t // 2), np.arange(t // 2, t)):
        idx = np.resize(steps, t)
        halves.append(replace(data, s2=data.s2[idx], s2_valid=data.s2_valid[idx], s1=data.s1[idx],
                              s1_valid=data.s1_valid[idx]))
    return halves[0], halves[1]


def _shares_dates(stack: StackStore, row: int, col: int) -> bool:
    g = stack.group
    if "s2_date" not in g:
        return False
    r, c = row - stack.area.row0, col - stack.area.col0
    dates = np.asarray(g["s2_date"][:, r, c])
    t = dates.shape[0]
    return bool(set(dates[: t // 2].tolist()) & set(dates[t // 2:].tolist()))


def predict_halves(config: PipelineConfig, month: str, adapter: str, chips: list[tuple[int, int]],
                   runner: Predictor) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], int]:
    """Per sampled chip, the quantized layers predicted from each half of the timesteps."""
    from nyceo.infer.stage import open_stack  # the published stack of this configuration, or a clear error

    stack, _ = open_stack(config, month)
    plan = WindowPlan.for_area(stack.area, 0.0)
    size = stack.area.lattice.chip_size_px
    halves_a, halves_b, shared = [], [], 0
    for row, col in chips:
        ys, xs = stack.area.chip_slices(row, col)
        box = (ys.start, ys.stop, xs.start, xs.stop)
        spec = BlockSpec(chip_id(row, col), box, box)
        data = stack.read(box)
        windows = block_windows(plan, spec, data)
        if len(windows) != 1 or windows[0].size_px != size:
            raise RuntimeError(f"chip {spec.block_id}: expected one {size} px window, got {len(windows)}")
        half_a, half_b = split_halves(data)
        halves_a.append((spec, half_a, windows[0]))
        halves_b.append((spec, half_b, windows[0]))
        shared += _shares_dates(stack, row, col)
    # the sampled chips' windows share forward passes (batch_size), each chip predicted as alone
    out_a = predict_single_window_blocks(runner, adapter, plan, halves_a, config.infer)
    out_b = predict_single_window_blocks(runner, adapter, plan, halves_b, config.infer)
    return out_a, out_b, shared


def _flatten(layers: list[dict[str, np.ndarray]]) -> MonthLayers:
    return MonthLayers(
        class_map=np.concatenate([l["class_map"].ravel() for l in layers]),
        probability=np.concatenate([l["probability"].reshape(l["probability"].shape[0], -1) for l in layers], axis=1),
        confidence=np.concatenate([l["confidence"].ravel() for l in layers]),
    )


def area_labels(config: PipelineConfig, chips: list[tuple[int, int]]) -> tuple[np.ndarray, list[str]]:
    """(N,) borough index of every sampled pixel (pixel centre in polygon), and the borough slugs."""
    from nyceo.mosaic.clip import area_mask, configured_areas
    from nyceo.mosaic.layout import CITY_AREA

    lattice = Lattice.from_config(config.grid)
    areas = [a for s, a in configured_areas(config).items() if s != CITY_AREA]
    size = lattice.chip_size_px
    parts = []
    for row, col in chips:
        idx = np.full((size, size), -1, dtype=np.int16)
        for i, area in enumerate(areas):
            idx[area_mask(area.geometry, lattice.transform(row, col), (size, size))] = i
        parts.append(idx.ravel())
    return np.concatenate(parts), [a.slug for a in areas]


def measure_null(config: PipelineConfig, month: str, adapter: str, valid_chips: list[tuple[int, int]],
                 runner: Predictor | None = None) -> NullSample:
    """Predict a seeded sample of ``valid_chips`` twice (split timesteps) with the real runner."""
    nc = config.change.noise
    chips = sample_chips(valid_chips, nc.sample_fraction, nc.min_chips, nc.seed)
    if not chips:
        raise ValueError(f"{month}/{adapter}: no chip with predictions to measure the noise floor on")
    if runner is None:
        from nyceo.infer.stage import make_runner  # imports nyceo.model (torch) lazily

        runner = make_runner(config)
    a, b, shared = predict_halves(config, month, adapter, chips, runner)
    labels, slugs = area_labels(config, chips)
    return NullSample(_flatten(a), _flatten(b), labels, slugs, [chip_id(r, c) for r, c in chips], shared)


def runner_identity(runner: Predictor, adapter: str) -> dict[str, Any]:
    prov = runner.provenance(adapter)
    return {"sha256": prov.get("sha256"), "adapter": prov.get("adapter", adapter)}
