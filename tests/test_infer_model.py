"""End to end with the real model: tiny TerraMind backbone + the three seeded demo adapters.

The CLI runs `nyceo infer` on a seeded stack store; then the Prefect task runs again on a real
(ephemeral) Prefect API and finds every block finished.
"""

from __future__ import annotations

import os

from pathlib import Path

import numpy as np
import zarr
from typer.testing import CliRunner

from nyceo import paths
from nyceo.cli import app
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.store import marker_dir
from nyceo.infer.testing import write_published_stack
from tests.conftest import write_config

MONTH = "2024-07"


def test_cli_then_task_with_real_runner(tmp_path: Path, prefect_api: None) -> None:
    cfg_path = write_config(tmp_path)
    cfg = load_config(cfg_path)
    area = AreaGrid(217, 251, 1, 1, Lattice.from_config(cfg.grid))
    valid = np.ones((224, 224), dtype=bool)
    valid[:, 200:] = False  # a strip without data at the east edge
    write_published_stack(cfg, MONTH, area, seed=11, valid=valid)

    result = CliRunner().invoke(app, ["infer", "--month", MONTH, "-c", str(cfg_path)])
    assert result.exit_code == 0, result.output
    names = ["lulc_nyc", "tim_nyc", "buildings_nyc"]
    for name in names:
        path = paths.pred_store(cfg, MONTH, name)
        assert path in result.output
        g = zarr.open_group(path, mode="r")
        classes = cfg.infer.adapters[name].classes
        prob = g["probability"][:]
        assert prob.shape == (len(classes), 224, 224) and list(g["class"][:]) == classes
        assert (g["class_map"][:][:, :200] < len(classes)).all() and (g["class_map"][:][:, 200:] == 255).all()
        p = prob[:, :, :200].astype(int)
        assert (np.abs(p.sum(axis=0) - 254) <= len(classes)).all()  # quantized probabilities sum to ~1
        prov = dict(g.attrs)["provenance"]
        assert prov["model"]["sha256"] == cfg.infer.adapters[name].sha256 and prov["model"]["untrained"]
        assert prov["stack"]["seed"] == 11 and prov["config_hash"] == cfg.config_hash()
    lulc = zarr.open_group(paths.pred_store(cfg, MONTH, "lulc_nyc"), mode="r")["probability"][:]
    tim = zarr.open_group(paths.pred_store(cfg, MONTH, "tim_nyc"), mode="r")["probability"][:]
    assert not np.array_equal(lulc, tim)  # adapters really differ (swapped, not the same weights)
    from nyceo.infer.contract import infer_status

    st = infer_status(cfg, MONTH)
    assert st.state == "current" and st.done == st.total > 0 and set(st.detail) == set(cfg.infer.adapters)

    from prefect import flow

    from tasks.infer import infer_task

    published = os.path.realpath(paths.pred_store(cfg, MONTH, "lulc_nyc"))  # the published build
    stamps = {p: p.stat().st_mtime_ns for p in Path(marker_dir(published)).glob("*.json")}

    @flow
    def again() -> dict[str, str]:
        return infer_task(str(cfg_path), MONTH, ["lulc_nyc"])

    assert again() == {"lulc_nyc": paths.pred_store(cfg, MONTH, "lulc_nyc")}
    assert len(stamps) == 1 and all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # skipped


def test_stores_do_not_depend_on_which_adapters_ran_together_or_on_a_resume(tmp_path: Path) -> None:
    """Issue 10, defects 1 and 2, through the real CLI and stage. Three months with the same seeded
    stack (a nodata edge in the west): adapters run together; each alone; together but resumed after
    the first block (a fresh process whose first block is the second one). Every store is the same.
    Before the fix, loading a second adapter left its LoRA slot active in the model while the runner
    still counted the first as active, so the first batch of the first block each process ran was
    predicted with the wrong adapter's LoRA."""
    from nyceo.infer import run_infer
    from nyceo.infer.engine import plan_blocks

    cfg_path = write_config(tmp_path, infer={"block_size_chips": 1})
    cfg = load_config(cfg_path)
    area = AreaGrid(219, 262, 1, 2, Lattice.from_config(cfg.grid))
    valid = np.ones((224, 448), dtype=bool)
    valid[:, :150] = False
    together, alone, resumed = "2024-06", "2024-07", "2024-08"
    for month in (together, alone, resumed):
        write_published_stack(cfg, month, area, seed=13, valid=valid)
    pair = ["buildings_nyc", "lulc_nyc"]
    cli = lambda month, names: CliRunner().invoke(  # noqa: E731
        app, ["infer", "--month", month, "--adapters", ",".join(names), "-c", str(cfg_path)])
    assert cli(together, pair).exit_code == 0
    assert cli(alone, pair[:1]).exit_code == 0 and cli(alone, pair[1:]).exit_code == 0
    first, _ = plan_blocks(area, 1)
    run_infer(cfg, resumed, pair, block_ids=[first.block_id])  # the run "killed" after its first block
    assert cli(resumed, pair).exit_code == 0  # the re-run: a fresh runner starting at the second block
    for name in pair:
        ref = zarr.open_group(paths.pred_store(cfg, together, name), mode="r")
        assert (ref["class_map"][:][:, 150:] < 255).all()
        for month in (alone, resumed):
            got = zarr.open_group(paths.pred_store(cfg, month, name), mode="r")
            for layer in ("class_map", "probability", "confidence"):
                np.testing.assert_array_equal(got[layer][:], ref[layer][:], err_msg=f"{name} {layer} {month}")
