"""Comparing two trained adapters on the same test split (two tiny probe-only adapters: A with 2 seeds,
B with 1): per-class IoU, ΔmIoU (B − A), the seed spread and the verdict (unknown while B has one
seed; decided once both have a spread); refusals when the test chips or the labels differ, or an
adapter was never trained."""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nyceo.cli import app
from nyceo.config import load_config
from nyceo.train.run import train_adapter  # imports nyceo.model first: torchvision importable
from nyceo.train.compare import compare_adapters
from nyceo.train.errors import TrainError
from tests.test_train_fit import ADAPTER, make_case

B = "buildings_b"


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    path = make_case(tmp, recipe={"probe_epochs": 2, "probe_lr": 0.002, "max_epochs": 0})
    raw = yaml.safe_load(path.read_text())
    raw["infer"]["adapters"][B] = {**copy.deepcopy(raw["infer"]["adapters"][ADAPTER]),
                                   "source": "{output_root}/demo_adapters/" + B}
    raw["train"]["adapters"][B] = {**copy.deepcopy(raw["train"]["adapters"][ADAPTER]), "probe_lr": 0.02}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(path)
    reports = {name: train_adapter(cfg, name, seeds=n)["metrics"] for name, n in ((ADAPTER, 2), (B, 1))}
    return path, cfg, reports


def test_compare_reports_iou_delta_and_seed_spread(two):
    path, cfg, m = two
    rec = compare_adapters(cfg, ADAPTER, B)
    a, b = m[ADAPTER], m[B]
    assert rec["test_chips"] == 1 and rec["test_pixels"] == a["test"]["pixels"] > 0
    for c in ("background", "building"):
        assert rec["classes"][c]["a"] == a["test"]["IoU"][c] and rec["classes"][c]["b"] == b["test"]["IoU"][c]
        assert rec["classes"][c]["delta"] == pytest.approx(b["test"]["IoU"][c] - a["test"]["IoU"][c])
    assert rec["mIoU"]["delta"] == pytest.approx(b["test"]["mIoU"] - a["test"]["mIoU"])
    s = rec["seeds"]
    assert (s["a"]["n"], s["b"]["n"]) == (2, 1) and s["a"]["std"] == a["seeds"]["std"] > 0 and s["b"]["std"] is None
    delta = b["seeds"]["mean"] - a["seeds"]["mean"]
    assert s["delta_mean"] == pytest.approx(delta) and s["combined_std"] is None and s["exceeds_spread"] is None
    folder = Path(rec["folder"])
    assert folder == Path(cfg.run.output_root) / "train" / "compare" / f"{ADAPTER}_vs_{B}"
    assert json.loads((folder / "comparison.json").read_text())["mIoU"] == rec["mIoU"]
    md = (folder / "comparison.md").read_text()
    assert "| **mIoU** |" in md and f"{delta:+.3f}" in md and "seed spread is unknown" in md

    res = CliRunner().invoke(app, ["adapters", "compare", "-c", str(path), ADAPTER, B])
    assert res.exit_code == 0, res.output
    assert "| **mIoU** |" in res.output and "comparison.json" in res.output


def test_the_verdict_once_both_adapters_have_a_seed_spread(two):
    from nyceo.train.compare import comparison, markdown

    _, _, m = two
    a = m[ADAPTER]
    std = a["seeds"]["std"]
    for shift, exceeds in ((0.5 * std, False), (3 * std, True)):  # B's seeds: A's, moved by `shift`
        values = [v + shift for v in a["seeds"]["values"]]
        b = {**m[B], "seeds": {"values": values, "mean": sum(values) / 2, "std": std}}
        rec = comparison(ADAPTER, B, a, b, ["r0217_c0251"])
        assert rec["seeds"]["combined_std"] == pytest.approx(math.sqrt(2) * std)
        assert rec["seeds"]["delta_mean"] == pytest.approx(shift) and rec["seeds"]["exceeds_spread"] is exceeds
        assert ("does not exceed" in markdown(rec)) is not exceeds


def test_different_test_chips_labels_or_no_training_are_refused(two, tmp_path):
    path, cfg, _ = two
    folder = Path(cfg.run.output_root) / "demo_adapters" / B
    twin = tmp_path / B
    shutil.copytree(folder, twin)
    other = load_config(path, {f"infer.adapters.{B}.source": str(twin)})
    (twin / "splits" / "test.txt").write_text((folder / "splits" / "test.txt").read_text() + "r0999_c0999\n")
    with pytest.raises(TrainError, match=r"tested on different chips .*same months, chip_ids/max_chips and split"):
        compare_adapters(other, ADAPTER, B)
    shutil.copy(folder / "splits" / "test.txt", twin / "splits" / "test.txt")
    metrics = json.loads((twin / "eval" / "metrics.json").read_text())
    (twin / "eval" / "metrics.json").write_text(json.dumps({**metrics, "labels": {"file_sha256": "0" * 64}}))
    with pytest.raises(TrainError, match=r"different labels .*same labels\.source"):
        compare_adapters(other, ADAPTER, B)
    with pytest.raises(TrainError, match=r"adapter 'lulc_nyc' has no exported eval/metrics\.json .*nyceo adapters train"):
        compare_adapters(cfg, ADAPTER, "lulc_nyc")
    res = CliRunner().invoke(app, ["adapters", "compare", "-c", str(path), ADAPTER, "lulc_nyc"])
    assert res.exit_code == 1 and "train it first" in res.output
