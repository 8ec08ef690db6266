"""Training on a tiny real case (seeded stack.zarr + a label GeoTIFF, tiny TerraMind, CPU): the loss
goes down, and the exported adapter predicts through the inference loader exactly what the trained
Lightning model predicts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from safetensors.torch import load_file

from nyceo import paths
from nyceo.config import TrainSplitConfig, load_config
from nyceo.grid import AreaGrid, Lattice, chip_id
from nyceo.infer.testing import stack_arrays, write_stack_store
from nyceo.train.split import split_chips
from tests.conftest import write_config

MONTH = "2024-07"
AREA = (217, 251, 2, 3)  # row0, col0, rows, cols: 6 chips
ADAPTER = "buildings_nyc"


def pick_salt(chips: list[str], block_chips: int = 1, buffer_chips: int = 0) -> str:
    """The first salt whose split of ``chips`` gives 2 train, 1 val and 1 test chip (the ids decide)."""
    for k in range(500):
        cfg = TrainSplitConfig(block_chips=block_chips, buffer_chips=buffer_chips, val_fraction=0.25,
                               test_fraction=0.25, salt=f"t{k}", min_chips={"train": 1, "val": 1, "test": 1})
        try:
            s = split_chips(chips, cfg)
        except ValueError:
            continue
        if (len(s["train"]), len(s["val"]), len(s["test"])) == (2, 1, 1):
            return cfg.salt
    raise AssertionError("no salt found")


def make_case(tmp: Path, recipe: dict | None = None, label_codes: tuple[int, int] = (10, 20),
              label_offset_chips: int = 0) -> Path:
    """Config + a seeded stack of MONTH over AREA + labels (bright pixels = code 20) in tmp."""
    cfg_path = write_config(tmp)
    cfg = load_config(cfg_path)
    lattice = Lattice.from_config(cfg.grid)
    area = AreaGrid(*AREA, lattice)
    write_stack_store(paths.stack_store(cfg, MONTH), area, seed=3)
    brightness = stack_arrays(area, 3)["s2"].mean(axis=(0, 1))
    codes = np.where(brightness > np.quantile(brightness, 0.6), label_codes[1], label_codes[0]).astype(np.uint8)
    transform = AreaGrid(AREA[0] + label_offset_chips, AREA[1], AREA[2], AREA[3], lattice).transform
    with rasterio.open(tmp / "labels.tif", "w", driver="GTiff", width=area.width_px, height=area.height_px, count=1,
                       dtype="uint8", crs="EPSG:32618", transform=transform, nodata=0) as ds:
        ds.write(codes, 1)
    chips = [chip_id(r, c) for r in range(AREA[0], AREA[0] + 2) for c in range(AREA[1], AREA[1] + 2)]
    raw = yaml.safe_load(cfg_path.read_text())
    base = {"labels": {"source": str(tmp / "labels.tif"), "remap": {10: 0, 20: 1}}, "months": [MONTH],
            "chip_ids": chips, "lora_r": 4, "lora_alpha": 8, "max_epochs": 6, "patience": 6, "batch_size": 2,
            "lr": 0.001, "flips": False,
            "split": {"block_chips": 1, "buffer_chips": 0, "val_fraction": 0.25, "test_fraction": 0.25,
                      "salt": pick_salt(chips), "min_chips": {"train": 1, "val": 1, "test": 1}}}
    raw["train"] = {"cpu_threads": 2, "adapters": {ADAPTER: {**base, **(recipe or {})}}}
    raw["infer"]["adapters"][ADAPTER]["sha256"] = {}  # trained files are pinned from the manifest
    raw["infer"]["adapters"][ADAPTER].pop("demo_seed")
    cfg_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return cfg_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from nyceo.train.run import train_adapter

    cfg = load_config(make_case(tmp_path_factory.mktemp("fit")))
    return cfg, train_adapter(cfg, ADAPTER)


def test_short_training_lowers_the_loss(trained):
    cfg, report = trained
    log = Path(report["train_root"]) / "runs" / "seed0" / "logs" / "version_0" / "metrics.csv"  # first (only) attempt
    losses = [float(r["train/loss"]) for r in csv.DictReader(log.open()) if r.get("train/loss")]
    assert len(losses) == 6  # 6 epochs x 1 step (2 train chips, batch 2)
    assert np.mean(losses[-2:]) < 0.8 * losses[0], losses
    splits = Path(report["train_root"]) / "splits"
    assert {p.name for p in splits.iterdir()} == {"train.txt", "val.txt", "test.txt"}
    assert len(splits.joinpath("train.txt").read_text().split()) == 2
    assert report["metrics"]["test"]["pixels"] > 0 and report["metrics"]["seeds"]["values"]


def test_export_is_the_published_format_and_pinned_by_the_manifest(trained):
    from nyceo.model.adapters import load_adapter_files
    from nyceo.model.weights import WeightsError
    from nyceo.train.manifest import pinned_config, read_manifest

    cfg, report = trained
    folder = Path(report["folder"])
    lora_cfg = json.loads((folder / "adapter_config.json").read_text())
    assert (lora_cfg["r"], lora_cfg["lora_alpha"], lora_cfg["peft_type"]) == (4, 8, "LORA")
    assert sorted(lora_cfg["target_modules"]) == ["attn.proj", "attn.qkv"]
    lora = load_file(str(folder / "adapter_model.safetensors"))
    assert set(lora) == {f"encoder.encoder.encoder.{i}.attn.{m}.lora_{ab}.default.weight"
                         for i in range(12) for m in ("qkv", "proj") for ab in "AB"}
    assert any(v.abs().sum() > 0 for k, v in lora.items() if ".lora_B." in k)  # LoRA B trained away from zero
    head = load_file(str(folder / "decoder_head.safetensors"))
    assert {k.split(".")[0] for k in head} == {"neck", "decoder", "head"} and head["head.head.2.weight"].shape[0] == 2
    metrics = json.loads((folder / "eval" / "metrics.json").read_text())
    assert metrics["test"]["mIoU"] == report["metrics"]["test"]["mIoU"]
    assert (folder / "splits" / "test.txt").read_text() == (Path(report["train_root"]) / "splits" / "test.txt").read_text()
    assert "mIoU" in (folder / "README.md").read_text()
    manifest = read_manifest(cfg, ADAPTER)
    assert manifest["sha256"] == report["sha256"] and manifest["key"] == report["key"]
    # require_sha256 holds: unpinned files are refused, the manifest pins make them load
    with pytest.raises(WeightsError, match="no pinned sha256"):
        load_adapter_files(ADAPTER, cfg)
    files = load_adapter_files(ADAPTER, pinned_config(cfg))
    assert files.sha256["decoder_head.safetensors"] == report["sha256"]["decoder_head.safetensors"]


def test_exported_adapter_predicts_like_the_trained_model(trained):
    """Round trip: AdapterRunner on the exported files == the Lightning model on the same inputs."""
    from nyceo.model import AdapterRunner
    from nyceo.train.data import ChipDataset, collect_samples, normalize
    from nyceo.train.manifest import pinned_config

    cfg, report = trained
    samples = collect_samples(cfg, ADAPTER).samples
    ds = ChipDataset(samples, cfg, ADAPTER)
    raw = [ds.raw_inputs(i)[0] for i in range(2)]
    batch = {m: np.concatenate([r[m] for r in raw]) for m in raw[0]}
    runner = AdapterRunner(pinned_config(cfg), device="cpu")
    p_runner = runner.predict_proba(ADAPTER, batch)
    model = report["task"].model.eval()
    with torch.inference_mode():
        p_trained = model(normalize(batch, cfg.infer.adapters[ADAPTER], 4)).output.softmax(dim=1).numpy()
    assert p_runner.shape == (2, 2, 224, 224)
    np.testing.assert_allclose(p_runner, p_trained, atol=1e-5)
    assert (p_runner.argmax(1) == p_trained.argmax(1)).all()
    assert runner.provenance(ADAPTER)["sha256"]["adapter_model.safetensors"] == report["sha256"]["adapter_model.safetensors"]
