"""Swap equivalence of the real runner: every demo adapter, loaded and run in every order, gives
exactly what a runner holding only that adapter gives (issue 10, defect 1).

Inputs are two real windows cut by the engine's own ``assemble_batch`` from a seeded stack with
realistic digital numbers and a nodata edge (masked S2, NaN radar, filled by the window band mean):
the situation of the chips where the defect showed. Tolerance: none. The runners hold the same
tensors and run the same kernels on the same batch in one process, so the outputs must agree bit
for bit; any swap leftover (another adapter's LoRA slot, neck, decoder, head, buffer or RNG state)
shows as a difference, while LoRA alone moves the probabilities by > 0.01.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

import nyceo.model as M
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.inputs import assemble_batch
from nyceo.infer.testing import stack_block
from tests.conftest import write_config

NAMES = ("lulc_nyc", "tim_nyc", "buildings_nyc")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = load_config(write_config(tmp_path_factory.mktemp("determinism")))
    M.ensure_demo_adapters(cfg)
    return cfg


@pytest.fixture(scope="module")
def windows(cfg):
    """Two 224 px windows (batch of 2) at the western edge of the valid area, and their global origins."""
    area = AreaGrid(219, 262, 1, 2, Lattice.from_config(cfg.grid))
    valid = np.ones((224, 448), dtype=bool)
    valid[:, :150] = False  # no data west of the valid area (unselected chips) ...
    valid[:40, 150:260] = False  # ... and a partial scene
    block = stack_block(area, seed=19, valid=valid)
    inputs = assemble_batch(block, [(0, 0), (0, 224)], 224, cfg.infer.fill_fallback)
    assert 1000 < float(inputs["S2L2A"].mean()) < 5000 and np.isfinite(inputs["S1RTC"]).all()
    size = area.lattice.chip_size_px
    return inputs, [(area.row0 * size, area.col0 * size), (area.row0 * size, (area.col0 + 1) * size)]


@pytest.fixture(scope="module")
def fresh(cfg, windows):
    """Reference: per adapter, a newly built runner that never held any other adapter, and its output."""
    inputs, origins = windows
    runners = {name: M.AdapterRunner(cfg, device="cpu") for name in NAMES}
    return runners, {name: runners[name].predict_proba(name, inputs, origins) for name in NAMES}


@pytest.mark.parametrize("order", list(permutations(NAMES)), ids="-".join)
def test_swapped_runner_equals_a_fresh_runner_per_adapter(order, cfg, windows, fresh):
    """All adapters loaded up front in ``order`` (as the infer stage does), then run in that order."""
    inputs, origins = windows
    runner = M.AdapterRunner(cfg, device="cpu")
    runner.load(list(order))
    kept = {m: a.copy() for m, a in inputs.items()}
    for name in order:
        got = runner.predict_proba(name, inputs, origins)
        assert all(np.array_equal(inputs[m], kept[m]) for m in kept)  # the shared batch is never written
        assert got.shape == (2, len(cfg.infer.adapters[name].classes), 224, 224)
        np.testing.assert_array_equal(got, fresh[1][name], err_msg=f"{name} after loading {order}")
    # every adapter's neck/decoder/head tensors are its own (no storage shared between adapters)
    heads = runner._variants["terramind_v1_tiny"].heads
    ptrs = {n: {t.data_ptr() for t in parts.state_dict().values()} for n, parts in heads.items()}
    assert not ptrs["lulc_nyc"] & ptrs["buildings_nyc"]


def test_lora_moves_outputs_far_beyond_the_tolerance(windows, fresh):
    """With its LoRA slot disabled, each fresh runner's output moves by > 0.01 (the tolerance above is 0).
    Disabled the runner's way: every layer listed as adding zero runs its base layer alone."""
    inputs, origins = windows
    runners, want = fresh
    for name, runner in runners.items():
        for variant in runner._variants.values():
            if name in variant.identity:
                assert not variant.identity[name], f"{name}'s seeded LoRA has layers adding zero"
                variant.identity[name] = variant.lora_layers
        no_lora = runner.predict_proba(name, {m: a[:1] for m, a in inputs.items()}, origins[:1])
        moved = np.abs(no_lora - want[name][:1]).max()
        assert moved > 0.01, (name, moved)
