"""The model module on the tiny TerraMind backbone with the seeded demo adapters (CPU, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import nyceo.model as M
from nyceo.config import load_config
from nyceo.model.adapters import load_adapter_files
from nyceo.model.build import build_model, inner_encoder
from nyceo.model.runner import FLIPS, select_device
from tests.conftest import write_config

T = 4


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """Config path + config with demo adapters created once under a temporary output root."""
    path = write_config(tmp_path_factory.mktemp("model"))
    cfg = load_config(path)
    assert sorted(M.ensure_demo_adapters(cfg)) == ["buildings_nyc", "lulc_nyc", "tim_nyc"]
    return path, cfg


@pytest.fixture(scope="session")
def runner(demo):
    return M.AdapterRunner(demo[1], device="cpu")


def chip_inputs(batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "S2L2A": rng.uniform(0, 5000, (batch, 12, T, 224, 224)).astype(np.float32),
        "S1RTC": rng.uniform(-25, 0, (batch, 2, T, 224, 224)).astype(np.float32),
        "DEM": rng.uniform(0, 120, (batch, 1, 224, 224)).astype(np.float32),
    }


def adapter_dir(cfg, name: str) -> Path:
    return Path(cfg.infer.adapters[name].source.replace("{output_root}", cfg.run.output_root))


def test_demo_adapters_use_the_published_format(demo):
    _, cfg = demo
    folder = adapter_dir(cfg, "lulc_nyc")
    lora_cfg = json.loads((folder / "adapter_config.json").read_text())
    assert (lora_cfg["r"], lora_cfg["lora_alpha"], lora_cfg["lora_dropout"], lora_cfg["bias"]) == (16, 32, 0.05, "none")
    assert sorted(lora_cfg["target_modules"]) == ["attn.proj", "attn.qkv"] and lora_cfg["nyceo_untrained"] is True
    lora = load_file(str(folder / "adapter_model.safetensors"))
    expected = {f"encoder.encoder.encoder.{i}.attn.{m}.lora_{ab}.default.weight"
                for i in range(12) for m in ("qkv", "proj") for ab in "AB"}
    assert set(lora) == expected
    head = load_file(str(folder / "decoder_head.safetensors"))
    assert {k.split(".")[0] for k in head} == {"neck", "decoder", "head"}
    assert head["head.head.2.weight"].shape[0] == 5 and "neck.2.fpn1.0.weight" in head
    # idempotent: a second call creates nothing; files match the sha256 pinned in demo.yaml
    assert M.ensure_demo_adapters(cfg) == []
    files = load_adapter_files("lulc_nyc", cfg)
    assert files.sha256 == cfg.infer.adapters["lulc_nyc"].sha256 and files.untrained
    assert all(torch.equal(files.lora[k], lora[k]) for k in lora)


def test_wrong_hash_is_refused_before_inference(demo):
    path, cfg = demo
    pins = {**cfg.infer.adapters["buildings_nyc"].sha256, "decoder_head.safetensors": "0" * 64}
    cfg = load_config(path, {"infer.adapters.buildings_nyc.sha256": pins})
    with pytest.raises(M.WeightsError, match=r"decoder_head\.safetensors.*nyceo weights fetch"):
        M.AdapterRunner(cfg, device="cpu").predict_proba("buildings_nyc", chip_inputs())


def test_unpinned_file_is_refused_when_hashes_are_required(demo):
    path, _ = demo
    cfg = load_config(path, {"infer.adapters.buildings_nyc.sha256": {}})
    with pytest.raises(M.WeightsError, match="no pinned sha256.*infer.adapters.buildings_nyc.sha256"):
        M.AdapterRunner(cfg, device="cpu").load(["buildings_nyc"])


def test_wrong_class_count_names_file_and_fix(demo):
    path, _ = demo
    cfg = load_config(path, {"infer.adapters.lulc_nyc.classes": ["a", "b", "c"],
                             "infer.adapters.lulc_nyc.colors": ["#000000"] * 3})
    with pytest.raises(M.AdapterError, match=r"decoder_head\.safetensors has 5 output classes.*lists 3"):
        M.AdapterRunner(cfg, device="cpu").load(["lulc_nyc"])


def test_missing_tensor_names_the_tensor(demo, tmp_path):
    path, cfg = demo
    folder = tmp_path / "broken"
    shutil.copytree(adapter_dir(cfg, "buildings_nyc"), folder)
    lora = load_file(str(folder / "adapter_model.safetensors"))
    dropped = "encoder.encoder.encoder.7.attn.proj.lora_B.default.weight"
    del lora[dropped]
    save_file(lora, str(folder / "adapter_model.safetensors"))
    bad = load_config(path, {"infer.adapters.buildings_nyc.source": str(folder),
                             "infer.adapters.buildings_nyc.sha256": {}, "infer.require_sha256": False})
    with pytest.raises(M.AdapterError, match=r"tensor 'encoder\.encoder\.7\.attn\.proj\.lora_B.*missing in .*adapter_model"):
        M.AdapterRunner(bad, device="cpu").load(["buildings_nyc"])


def test_base_checkpoint_offline_missing_and_local_round_trip(demo, tmp_path):
    path, _ = demo
    hub = "hf://ibm-esa-geospatial/TerraMind-1.0-base@fb96c70d0a5f68dcc44030b89cbfd8ec3fb0c67a/TerraMind_v1_base.pt"
    cfg = load_config(path, {"infer.base_weights": hub, "infer.offline": True, "infer.hf_cache_dir": str(tmp_path / "hf")})
    with pytest.raises(M.WeightsError, match=r"TerraMind_v1_base\.pt.*offline.*nyceo weights fetch"):
        M.AdapterRunner(cfg, device="cpu").load(["buildings_nyc"])
    # a local checkpoint (tensors only) loads into the encoder through torch.load(weights_only=True)
    ref = inner_encoder(build_model("terramind_v1_tiny", [], 2, T, seed=7)).state_dict()
    ckpt = tmp_path / "TerraMind_v1_tiny.pt"
    torch.save(ref, ckpt)
    cfg = load_config(path, {"infer.base_weights": str(ckpt), "infer.base_sha256": M.weights.sha256_file(ckpt)})
    r = M.AdapterRunner(cfg, device="cpu")
    r.load(["buildings_nyc"])
    got = inner_encoder(r._variants["terramind_v1_tiny"].model).state_dict()
    key = "encoder.3.attn.qkv.base_layer.weight"
    assert torch.equal(got[key], ref["encoder.3.attn.qkv.weight"])
    assert r.provenance("buildings_nyc")["base_sha256"] == cfg.infer.base_sha256
    # a pickle that carries an object is refused (weights_only), with the file named
    torch.save({"x": Path("/")}, tmp_path / "evil.pt")
    cfg = load_config(path, {"infer.base_weights": str(tmp_path / "evil.pt"), "infer.require_sha256": False})
    with pytest.raises(M.WeightsError, match=r"evil\.pt cannot be read as tensors only"):
        M.AdapterRunner(cfg, device="cpu").load(["buildings_nyc"])


def fresh_probs(cfg, name: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Reference: a model built from scratch for one adapter with the published recipe."""
    from peft import LoraConfig, inject_adapter_in_model

    ad = cfg.infer.adapters[name]
    model = build_model(ad.backbone, ad.tim_modalities, len(ad.classes), T, seed=cfg.infer.random_base_seed)
    inject_adapter_in_model(LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["attn.qkv", "attn.proj"],
                                       bias="none"), model.encoder)
    files = load_adapter_files(name, cfg)
    res = model.load_state_dict({**files.lora, **files.head_tensors()}, strict=False)
    assert not res.unexpected_keys and not [k for k in res.missing_keys if "lora" in k or not k.startswith("encoder")]
    model.eval()
    x = {}
    for mod, arr in inputs.items():
        arr = np.repeat(arr[:, :, None], T, axis=2) if mod == "DEM" else arr
        mean = np.array(ad.norm_means[mod], np.float32).reshape(1, -1, 1, 1, 1)
        std = np.array(ad.norm_stds[mod], np.float32).reshape(1, -1, 1, 1, 1)
        x[mod] = torch.from_numpy((arr - mean) / std)
    with torch.no_grad():
        return model(x).output.softmax(1).numpy()


def test_swapped_adapters_equal_freshly_built_models(demo, runner):
    _, cfg = demo
    x = chip_inputs(seed=1)
    first = runner.predict_proba("lulc_nyc", x)
    bld = runner.predict_proba("buildings_nyc", x)
    again = runner.predict_proba("lulc_nyc", x)
    assert first.shape == (1, 5, 224, 224) and bld.shape == (1, 2, 224, 224) and first.dtype == np.float32
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, fresh_probs(cfg, "lulc_nyc", x), atol=2e-5, rtol=0)
    np.testing.assert_allclose(bld, fresh_probs(cfg, "buildings_nyc", x), atol=2e-5, rtol=0)
    # one base for both: the two adapters share the encoder's frozen weights
    assert list(runner._variants) == ["terramind_v1_tiny"]
    # heads_resident=false (only the active neck/decoder/head in memory) gives the same outputs
    lean = M.AdapterRunner(load_config(demo[0], {"infer.heads_resident": False}), device="cpu")
    for name, want in (("lulc_nyc", first), ("buildings_nyc", bld), ("lulc_nyc", first)):
        np.testing.assert_array_equal(lean.predict_proba(name, x), want)
    assert sum(h is not None for h in lean._variants["terramind_v1_tiny"].heads.values()) == 1
    prov = runner.provenance("buildings_nyc")
    assert prov["sha256"] == cfg.infer.adapters["buildings_nyc"].sha256 and prov["device"] == "cpu"
    assert prov["dtype"] == "float32" and prov["untrained"] is True


def test_sdpa_patch_matches_unfused_attention():
    from terratorch.models.backbones.terramind.model.tm_utils import NormAttention

    from nyceo.model.sdpa import use_sdpa

    torch.set_float32_matmul_precision("highest")  # importing terratorch set "medium" (bf16 matmuls)
    torch.manual_seed(0)
    attn = NormAttention(64, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 50, 64)
    mask = torch.rand(2, 50, 50) < 0.3
    mask[..., 0] = False  # every query keeps at least one key
    with torch.no_grad():
        ref, ref_masked = attn(x), attn(x, mask)
        assert use_sdpa(torch.nn.Sequential(attn)) == 1
        got, got_masked = attn(x), attn(x, mask)
    assert torch.allclose(got, ref, atol=1e-5) and torch.allclose(got_masked, ref_masked, atol=1e-5)
    assert not torch.allclose(got, got_masked, atol=1e-3)  # the mask is really applied


def test_flip_tta_is_equivariant_and_unflips(demo):
    path, _ = demo
    cfg = load_config(path, {"infer.tta_flips": True})
    r = M.AdapterRunner(cfg, device="cpu")
    x = chip_inputs(seed=2)
    p = r.predict_proba("buildings_nyc", x)
    flipped = {m: np.ascontiguousarray(np.flip(a, axis=-1)) for m, a in x.items()}
    p_flipped = r.predict_proba("buildings_nyc", flipped)
    np.testing.assert_allclose(p_flipped, np.flip(p, axis=-1), atol=2e-5)
    # TTA output = mean of the un-flipped per-flip predictions of a plain runner
    plain = M.AdapterRunner(load_config(path), device="cpu")
    per_flip = [np.flip(plain.predict_proba("buildings_nyc", {m: np.ascontiguousarray(np.flip(a, axis=d))
                                                          for m, a in x.items()}), axis=d) if d else
                plain.predict_proba("buildings_nyc", x) for d in FLIPS]
    np.testing.assert_allclose(p, np.mean(per_flip, axis=0), atol=2e-5)
    assert not np.allclose(p, per_flip[0], atol=1e-4)


def test_tim_adapter_runs_seeded_on_its_own_base(runner):
    x = chip_inputs(seed=3)
    keys = set(x)
    p1 = runner.predict_proba("tim_nyc", x)
    p2 = runner.predict_proba("tim_nyc", x)
    assert p1.shape == (1, 5, 224, 224) and set(x) == keys
    np.testing.assert_allclose(p1.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(p1, p2)  # TiM token sampling is seeded by infer.tim_seed
    assert "terramind_v1_tiny_tim" in runner._variants
    assert runner.provenance("tim_nyc")["backbone"] == "terramind_v1_tiny_tim"


def test_input_errors_are_clear(runner):
    x = chip_inputs()
    x["S1RTC"][0, 1, 2, 5, 5] = np.nan
    with pytest.raises(M.AdapterError, match="'S1RTC' holds NaN"):
        runner.predict_proba("lulc_nyc", x)
    x = chip_inputs()
    x["S2L2A"] = x["S2L2A"][:, :, :3]
    with pytest.raises(M.AdapterError, match=r"'S2L2A' has shape .*T=4"):
        runner.predict_proba("lulc_nyc", x)
    with pytest.raises(KeyError, match="not configured"):
        runner.classes("roads_nyc")
    assert runner.classes("buildings_nyc") == ["background", "building"]


def test_device_selection():
    yes, no = (lambda: True), (lambda: False)
    assert select_device("auto", yes, yes).type == "cuda"
    assert select_device("auto", no, yes).type == "mps"
    assert select_device("auto", no, no).type == "cpu"
    assert select_device("cuda:1", yes, no) == torch.device("cuda", 1)
    with pytest.raises(RuntimeError, match="'cuda' is not available"):
        select_device("cuda", no, no)


def test_cpu_runner_restores_intra_op_threads_after_dask(demo):
    """dask's LocalCluster writes OMP_NUM_THREADS=1 into the parent process; the runner must not
    inherit one thread (it halved CPU inference in the monthly flow)."""
    from distributed import LocalCluster

    from nyceo.model.runner import cpu_threads

    before = torch.get_num_threads()
    try:
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None):
            pass
        torch.set_num_threads(1)  # what a fresh OpenMP pool reads from OMP_NUM_THREADS=1
        M.AdapterRunner(demo[1], device="cpu")
        assert torch.get_num_threads() == cpu_threads(None) >= 1
        path, _ = demo
        M.AdapterRunner(load_config(path, {"infer.cpu_threads": 1}), device="cpu")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_tim_sampling_is_configured_and_recorded(demo):
    """tim_temperature 0 makes TiM generation argmax: the output no longer depends on tim_seed,
    while default top-p sampling does; the setting reaches the TiM module and the provenance."""
    path, _ = demo
    x = chip_inputs(seed=5)

    def run(**over):
        cfg = load_config(path, {f"infer.{k}": v for k, v in over.items()})
        r = M.AdapterRunner(cfg, device="cpu")
        return r.predict_proba("tim_nyc", x), r

    greedy_a, r = run(tim_temperature=0.0, tim_seed=1)
    greedy_b, _ = run(tim_temperature=0.0, tim_seed=2)
    np.testing.assert_array_equal(greedy_a, greedy_b)
    assert r.provenance("tim_nyc")["tim_sampling"] == {"temperature": 0.0, "top_p": 0.8}
    tims = [m for m in r._variants["terramind_v1_tiny_tim"].model.modules() if hasattr(m, "tim_temps")]
    assert tims and all(m.tim_temps == 0.0 for m in tims)
    sampled_a, _ = run(tim_seed=1)
    sampled_b, _ = run(tim_seed=2)
    assert np.abs(sampled_a - sampled_b).max() > 1e-4


def test_importing_terratorch_keeps_float32_matmuls_in_float32():
    """terratorch's clay_v15 module sets torch.set_float32_matmul_precision("medium") on import
    (bf16 matmuls on CPUs that have them): outputs moved by ~6e-4. Fresh process: it must not stick."""
    import subprocess
    import sys

    code = ("import torch; from nyceo.model.build import terratorch_factory; terratorch_factory(); "
            "print(torch.get_float32_matmul_precision())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "highest"
