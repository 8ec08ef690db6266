"""Bad training input is refused before any training starts, with an error naming the thing and the fix."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from nyceo.config import load_config
from nyceo.train.errors import TrainError
from nyceo.train.run import preflight
from tests.test_train_fit import ADAPTER, make_case


def test_a_label_code_missing_from_the_remap(tmp_path):
    cfg = load_config(make_case(tmp_path, label_codes=(10, 30)))  # 30 is not in remap {10: 0, 20: 1}
    with pytest.raises(TrainError, match=r"label raster .*labels\.tif, chip r0217_c025\d: label code\(s\) \[30\] "
                                         r"are not in labels\.remap \[10, 20\].*map each code"):
        preflight(cfg, ADAPTER)


def test_a_class_count_that_does_not_match_the_adapters_classes(tmp_path):
    cfg = load_config(make_case(tmp_path, recipe={"labels": {"source": str(tmp_path / "labels.tif"),
                                                              "remap": {10: 0, 20: 1, 30: 2}}}))
    with pytest.raises(TrainError, match=r"remap maps to class indices \[0, 1, 2\] but infer\.adapters\.buildings_nyc"
                                         r"\.classes lists 2 classes"):
        preflight(cfg, ADAPTER)
    cfg = load_config(make_case(tmp_path, recipe={"class_weights": [1.0, 2.0, 3.0]}))
    with pytest.raises(TrainError, match=r"class_weights has 3 values for 2 classes"):
        preflight(cfg, ADAPTER)


def test_labels_that_do_not_overlap_the_stacks(tmp_path):
    cfg = load_config(make_case(tmp_path, label_offset_chips=10))  # the raster lies 10 chips south
    with pytest.raises(TrainError, match=r"do not overlap the stacks of \['2024-07'\].*no chip has a labelled pixel"):
        preflight(cfg, ADAPTER)


def test_too_few_chips_for_the_split_with_its_buffer(tmp_path):
    split = {"block_chips": 1, "buffer_chips": 2, "val_fraction": 0.25, "test_fraction": 0.25}
    cfg = load_config(make_case(tmp_path, recipe={"split": split}))
    with pytest.raises(TrainError, match=r"too few chips for the split: 4 chips give .*buffer 2"):
        preflight(cfg, ADAPTER)


def test_missing_stack_and_unknown_adapter(tmp_path):
    cfg = load_config(make_case(tmp_path, recipe={"months": ["2024-06"]}))
    with pytest.raises(TrainError, match=r"train\.adapters\.buildings_nyc\.months: month 2024-06 has no finished stack .*`nyceo acquire --month 2024-06"):
        preflight(cfg, ADAPTER)
    with pytest.raises(TrainError, match=r"adapter 'nope' has no training recipe; add train\.adapters\.nope"):
        preflight(cfg, "nope")


def test_cli_reports_the_error_and_exits_1(tmp_path):
    from nyceo.cli import app

    path = make_case(tmp_path, label_codes=(10, 30))
    res = CliRunner().invoke(app, ["adapters", "train", "-c", str(path), "--adapter", ADAPTER])
    assert res.exit_code == 1 and "label code(s) [30]" in res.output
    # --months overrides the recipe's months
    res = CliRunner().invoke(app, ["adapters", "train", "-c", str(path), "--adapter", ADAPTER, "--months", "2023-01"])
    assert res.exit_code == 1 and "2023-01" in res.output and "nyceo acquire" in res.output
    raw = yaml.safe_load(path.read_text())
    assert raw["train"]["adapters"][ADAPTER]["months"] == ["2024-07"]
