from pathlib import Path

import pytest
import yaml

from nyceo.config import ConfigError, PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["default.yaml", "demo.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / name)
    assert cfg.grid.crs == "EPSG:32618"
    assert cfg.grid.chip_size_px == 224
    assert len(cfg.acquire.s2_bands) == 12


def test_misspelt_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"grid": {"chip_sise_px": 256}}))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert "grid.chip_sise_px" in msg
    assert str(bad) in msg
    assert "unknown key" in msg


def test_unknown_top_level_section_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("infrence:\n  batch_size: 4\n")
    with pytest.raises(ConfigError, match="infrence"):
        load_config(bad)


def test_wrong_type_names_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  chip_size_px: big\n")
    with pytest.raises(ConfigError, match=r"grid\.chip_size_px"):
        load_config(bad)


def test_origin_off_lattice_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid:\n  origin_x_m: 1000\n")
    with pytest.raises(ConfigError, match="not a multiple of the chip size"):
        load_config(bad)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_hash_is_stable_and_sensitive():
    a = PipelineConfig()
    b = PipelineConfig()
    assert a.config_hash() == b.config_hash()
    c = PipelineConfig.model_validate({"grid": {"min_land_fraction": 0.5}})
    assert c.config_hash() != a.config_hash()


def test_overrides_apply(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", overrides={"grid.boroughs": ["Manhattan"]})
    assert cfg.grid.boroughs == ["Manhattan"]
