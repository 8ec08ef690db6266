"""Exact inference shortcuts of the runner (issue 12: the demo within its time budget).

1. LoRA layers whose B is all zero (peft's initialisation; an adapter exported after a probe-only
   fit, as the demo's are) run their base layer alone: the output equals running them, bit for bit.
2. Adapters whose encoder is the same function (every LoRA layer adds zero, same normalisation,
   not TiM) share one encoder pass per batch in ``predict_proba_many``: each result equals its own
   ``predict_proba`` bit for bit, and the encoder runs once instead of twice. Adapters with a real
   LoRA never share.
The adapters are the demo's seeded published-format files; two of them are rewritten with B = 0
(sha256 pinned again), as a probe-only training run exports them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import nyceo.model as M
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.inputs import assemble_batch
from nyceo.infer.testing import stack_block
from nyceo.io import sha256_file
from nyceo.model.weights import parse_source
from tests.conftest import write_config

IDENTITY = ("lulc_nyc", "buildings_nyc")


def _zero_lora_b(folder: Path) -> dict[str, str]:
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    assert any("lora_B" in k for k in tensors)
    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in tensors.items()}, path)
    return {f.name: sha256_file(f) for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in (".json", ".safetensors")}


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """(demo config with seeded LoRA, the same with lulc/buildings exported as B = 0)."""
    tmp = tmp_path_factory.mktemp("shared-encoder")
    path = write_config(tmp)
    seeded = load_config(path)
    M.ensure_demo_adapters(seeded)
    raw = yaml.safe_load(path.read_text())
    for name in IDENTITY:
        src = tmp / "identity" / name
        src.mkdir(parents=True)
        folder = Path(parse_source(seeded.infer.adapters[name].source, seeded.run.output_root).location)
        for f in folder.iterdir():
            if f.is_file():
                (src / f.name).write_bytes(f.read_bytes())
        ad = raw["infer"]["adapters"][name]
        ad["source"], ad["sha256"] = str(src), {k: v for k, v in _zero_lora_b(src).items() if k in ad["sha256"]}
        ad.pop("demo_seed", None)
    (tmp / "identity.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return seeded, load_config(tmp / "identity.yaml")


@pytest.fixture(scope="module")
def batch(configs):
    area = AreaGrid(219, 262, 1, 2, Lattice.from_config(configs[0].grid))
    inputs = assemble_batch(stack_block(area, seed=23), [(0, 0), (0, 224)], 224, configs[0].infer.fill_fallback)
    return inputs, [(219 * 224, 262 * 224), (219 * 224, 263 * 224)]


def _encoder_calls(runner: M.AdapterRunner) -> list[int]:
    calls = [0]
    for variant in runner._variants.values():
        variant.model.encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_zero_lora_layers_are_skipped_exactly(configs, batch):
    _, identity = configs
    inputs, origins = batch
    runner = M.AdapterRunner(identity, device="cpu")
    runner.load(list(IDENTITY))
    variant = runner._variants["terramind_v1_tiny"]
    assert variant.identity["lulc_nyc"] == variant.lora_layers and len(variant.lora_layers) > 0
    skipped = runner.predict_proba("lulc_nyc", inputs, origins)
    variant.identity["lulc_nyc"] = frozenset()  # run every LoRA layer (B = 0: adds exactly zero)
    ran = runner.predict_proba("lulc_nyc", inputs, origins)
    np.testing.assert_array_equal(skipped, ran)


def test_identity_adapters_share_one_encoder_pass_with_identical_results(configs, batch):
    _, identity = configs
    inputs, origins = batch
    alone = {}
    for name in (*IDENTITY, "tim_nyc"):
        fresh = M.AdapterRunner(identity, device="cpu")
        alone[name] = fresh.predict_proba(name, inputs, origins)
    runner = M.AdapterRunner(identity, device="cpu")
    runner.load()
    calls = _encoder_calls(runner)
    got = runner.predict_proba_many(["buildings_nyc", "tim_nyc", "lulc_nyc"], inputs, origins)
    assert list(got) == ["buildings_nyc", "tim_nyc", "lulc_nyc"]
    for name, want in alone.items():
        np.testing.assert_array_equal(got[name], want, err_msg=name)
    tiny_calls = calls[0] - 1  # the TiM variant's encoder ran once for tim_nyc
    assert tiny_calls == 1, f"lulc and buildings should share one encoder pass, ran {tiny_calls}"
    assert runner._variants["terramind_v1_tiny"].model.encoder.__class__.__name__ != "FeatureReplay"


def test_adapters_with_a_real_lora_never_share(configs, batch):
    seeded, _ = configs
    inputs, origins = batch
    runner = M.AdapterRunner(seeded, device="cpu")
    runner.load(list(IDENTITY))
    calls = _encoder_calls(runner)
    got = runner.predict_proba_many(list(IDENTITY), inputs, origins)
    assert calls[0] == 2
    assert not np.array_equal(got["lulc_nyc"][:, :2], got["buildings_nyc"][:, :2])
    for name in IDENTITY:
        np.testing.assert_array_equal(got[name], M.AdapterRunner(seeded, device="cpu").predict_proba(name, inputs, origins))
