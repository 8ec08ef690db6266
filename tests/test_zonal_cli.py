"""The zonal / exposure / report commands, through the real Typer app, on a small published month."""

from __future__ import annotations

from typer.testing import CliRunner

from nyceo.cli import app
from tests.zonal_helpers import MONTH, make_config, publish_pred


def test_zonal_exposure_and_report_commands(tmp_path):
    cfg = make_config(tmp_path, adapters=["lulc_nyc"], ndvi=False, ntas=False)
    cfg_path = tmp_path / "config.yaml"
    runner = CliRunner()
    res = runner.invoke(app, ["zonal", "--month", MONTH, "-c", str(cfg_path)])
    assert res.exit_code == 0 and "skipped: no prediction store published" in res.output
    publish_pred(cfg, MONTH, "lulc_nyc", seed=3)
    res = runner.invoke(app, ["zonal", "--month", MONTH, "-c", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "zonal 2024-07 done" in res.output and "lulc_nyc/borough.csv" in res.output
    res = runner.invoke(app, ["exposure", "--month", MONTH, "-c", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "ILLUSTRATIVE" in res.output and "Manhattan" in res.output and "developed_km2" in res.output
    res = runner.invoke(app, ["report", "--month", MONTH, "-c", str(cfg_path)])
    assert res.exit_code == 0 and "report/index.html" in res.output, res.output
    (tmp_path / "bad.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    bad = cfg_path.read_text() + ""
    cfg_path.write_text(bad.replace("zonal:\n", "zonal:\n  layers: [{name: bad, path: %s, id_column: id}]\n" % (tmp_path / "nope.gpkg"), 1))
    res = runner.invoke(app, ["zonal", "--month", MONTH, "-c", str(cfg_path)])
    assert res.exit_code == 1 and "nope.gpkg does not exist" in res.output
