"""The `nyceo adapters` / `nyceo weights` commands (real CLI, real files, no network)."""

from __future__ import annotations

from typer.testing import CliRunner

from nyceo.cli import app
from tests.conftest import REPO, write_config


def test_adapters_list_shows_the_pinned_registry():
    res = CliRunner().invoke(app, ["adapters", "list", "-c", str(REPO / "configs/default.yaml")])
    assert res.exit_code == 0, res.output
    assert "TerraMind-NYC-Adapters@984341631d10db4fb699f76cd5d5bc7d8b3690b3/tim_nyc" in res.output
    assert "terramind_v1_base_tim" in res.output and "['background', 'building']" in res.output


def test_adapters_verify_without_demo_adapters_says_how_to_make_them(tmp_path):
    cfg = write_config(tmp_path)
    res = CliRunner().invoke(app, ["adapters", "verify", "-c", str(cfg)])
    assert res.exit_code == 1
    assert "missing in folder" in res.output and "nyceo adapters make-demo" in res.output


def test_weights_fetch_with_only_local_sources_fetches_nothing(tmp_path):
    cfg = write_config(tmp_path)  # demo: base 'none', local adapter folders
    res = CliRunner().invoke(app, ["weights", "fetch", "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "names no hf:// source" in res.output and "nothing to fetch, no pin file written" in res.output
    assert not (tmp_path / "config.pins.yaml").exists()
