"""TiM outputs do not depend on batching (issue 10, defect 7): the real runner with the demo
``tim_nyc`` adapter samples each window's tokens from ``tim_seed`` and the window's global origin.

Runner: the same windows alone, in a batch, and at other batch positions give identical
probabilities; another origin gives another sample. Engine: ``predict_block`` over a 1 x 2 chip area
with 50 % overlap (three windows, two of them straddling the block border) gives identical uint8
layers for block size 1 vs 2 and batch size 1 vs 8.
"""

from __future__ import annotations

import numpy as np
import pytest

import nyceo.model as M
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.engine import block_windows, plan_blocks, predict_block
from nyceo.infer.inputs import assemble_batch
from nyceo.infer.store import StackBlock
from nyceo.infer.testing import stack_block
from nyceo.infer.windows import WindowPlan
from tests.conftest import write_config

TIM = "tim_nyc"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("tim")), {"infer.overlap_fraction": 0.5})
    M.ensure_demo_adapters(cfg)
    area = AreaGrid(219, 262, 1, 2, Lattice.from_config(cfg.grid))
    valid = np.ones((224, 448), dtype=bool)
    valid[:, :90] = False  # a nodata edge, filled by the window band mean
    return cfg, area, stack_block(area, seed=23, valid=valid), M.AdapterRunner(cfg, device="cpu")


def test_a_windows_tim_sample_depends_on_its_origin_not_its_batch(setup):
    cfg, area, block, runner = setup
    local = [(0, 0), (0, 112), (0, 224)]
    gy0, gx0 = area.row0 * 224, area.col0 * 224
    origins = [(gy0 + y, gx0 + x) for y, x in local]
    x = assemble_batch(block, local, 224, cfg.infer.fill_fallback)
    pick = lambda idx: {m: a[idx] for m, a in x.items()}  # noqa: E731
    batch = runner.predict_proba(TIM, x, origins)
    np.testing.assert_array_equal(runner.predict_proba(TIM, pick([1]), origins[1:2])[0], batch[1])  # alone
    swapped = runner.predict_proba(TIM, pick([2, 0]), [origins[2], origins[0]])  # other positions
    np.testing.assert_array_equal(swapped[0], batch[2])
    np.testing.assert_array_equal(swapped[1], batch[0])
    # the sample really is seeded by the origin (and tim_seed): another origin, another sample
    moved = runner.predict_proba(TIM, pick([0]), [(origins[0][0], origins[0][1] - 224)])[0]
    assert np.abs(moved - batch[0]).max() > 1e-4


def _layers(runner, cfg, area: AreaGrid, block: StackBlock, block_chips: int, batch: int) -> dict[str, np.ndarray]:
    """uint8 layers of ``tim_nyc`` over the whole area, computed block by block."""
    infer = cfg.infer.model_copy(update={"batch_size": batch})
    plan = WindowPlan.for_area(area, infer.overlap_fraction)
    out: dict[str, np.ndarray] = {}
    for spec in plan_blocks(area, block_chips):
        y0, y1, x0, x1 = spec.read_box
        data = StackBlock(block.s2[:, :, y0:y1, x0:x1], block.s2_valid[:, y0:y1, x0:x1],
                          block.s1[:, :, y0:y1, x0:x1], block.s1_valid[:, y0:y1, x0:x1], block.dem[y0:y1, x0:x1])
        layers = predict_block(runner, [TIM], plan, spec, data, block_windows(plan, spec, data), infer)[TIM]
        by0, by1, bx0, bx1 = spec.box
        for name, arr in layers.items():
            full = out.setdefault(name, np.full((*arr.shape[:-2], area.height_px, area.width_px), 7, np.uint8))
            full[..., by0:by1, bx0:bx1] = arr
    return out


def test_block_size_and_batch_size_do_not_change_tim_layers(setup):
    cfg, area, block, runner = setup
    ref = _layers(runner, cfg, area, block, block_chips=2, batch=8)  # one block, one batch of 3 windows
    assert (ref["class_map"][:, :90] == 255).all() and (ref["class_map"][:, 90:] < 5).all()
    for block_chips, batch in ((1, 1), (2, 1)):  # two blocks of two windows each; one window per batch
        got = _layers(runner, cfg, area, block, block_chips, batch)
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{name}: blocks {block_chips}, batch {batch}")


def test_one_window_blocks_batched_together_equal_each_block_alone(setup):
    """The noise floor's sample chips share forward passes (predict_single_window_blocks) and get
    exactly the layers predict_block gives each chip alone, TiM draws included."""
    from nyceo.infer.engine import predict_single_window_blocks

    cfg, area, block, _ = setup
    runner = M.AdapterRunner(cfg, device="cpu")
    infer = cfg.infer.model_copy(update={"overlap_fraction": 0.0, "batch_size": 8})
    plan = WindowPlan.for_area(area, 0.0)
    items = []
    for spec in plan_blocks(area, 1):  # the two chips, one block and one window each
        y0, y1, x0, x1 = spec.read_box
        data = StackBlock(block.s2[:, :, y0:y1, x0:x1], block.s2_valid[:, y0:y1, x0:x1],
                          block.s1[:, :, y0:y1, x0:x1], block.s1_valid[:, y0:y1, x0:x1], block.dem[y0:y1, x0:x1])
        (window,) = block_windows(plan, spec, data)
        items.append((spec, data, window))
    for adapter in (TIM, "lulc_nyc"):
        together = predict_single_window_blocks(runner, adapter, plan, items, infer)
        for (spec, data, window), got in zip(items, together):
            alone = predict_block(runner, [adapter], plan, spec, data, [window], infer)[adapter]
            for name in alone:
                np.testing.assert_array_equal(got[name], alone[name], err_msg=f"{adapter} {spec.block_id} {name}")
    assert (together[0]["class_map"][:, :90] == 255).all()  # nodata edge kept under the mask policy
