"""The tiled engine on real Zarr v3 stores: seams, edges, nodata, blocks, idempotency, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.grid import AreaGrid, Lattice
from nyceo import versioned
from nyceo.infer import run_infer
from nyceo.infer.store import StackStoreError, marker_dir
from nyceo.infer.testing import BandStandIn, SmoothStandIn, write_published_stack
from nyceo.infer.windows import WindowPlan

MONTH = "2024-07"
ROW0, COL0 = 217, 251  # lower Manhattan on the lattice


def make_config(tmp_path: Path, **infer: object) -> PipelineConfig:
    block = infer.pop("block_size_chips", 8)
    if "infer_block" in infer:  # the infer-specific override of the grid's block size
        infer["block_size_chips"], block = infer.pop("infer_block"), 8
    return PipelineConfig.model_validate(
        {"run": {"output_root": str(tmp_path / "outputs")}, "grid": {"block_size_chips": block},
         "infer": {"overlap_fraction": 0.5, "batch_size": 4, **infer}}
    )


def make_stack(cfg: PipelineConfig, n_rows: int = 3, n_cols: int = 3, seed: int = 7, **kw: object) -> AreaGrid:
    area = AreaGrid(ROW0, COL0, n_rows, n_cols, Lattice.from_config(cfg.grid))
    write_published_stack(cfg, MONTH, area, seed=seed, **kw)
    return area


def read_pred(path: str) -> dict[str, np.ndarray]:
    g = zarr.open_group(path, mode="r")
    return {v: g[v][:] for v in ("class_map", "probability", "confidence")}


def expected_smooth(model: SmoothStandIn, area: AreaGrid, adapter: str) -> np.ndarray:
    gy = area.row0 * 224 + np.arange(area.height_px, dtype=np.float64)
    gx = area.col0 * 224 + np.arange(area.width_px, dtype=np.float64)
    z = model.logits(*np.meshgrid(gy, gx, indexing="ij"), adapter)
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


def test_windows_align_with_map_position_to_the_area_edges(tmp_path: Path) -> None:
    """A model that is a pure function of position is reproduced exactly, edges included."""
    cfg = make_config(tmp_path, overlap_fraction=0.25)  # stride 168: edge windows are snapped
    area = make_stack(cfg, 2, 3, encode_position=True)
    model = SmoothStandIn(n_classes=3)
    out = run_infer(cfg, MONTH, ["lulc"], runner=model)
    pred = read_pred(out["lulc"])
    assert out["lulc"] == paths.pred_store(cfg, MONTH, "lulc")
    assert (pred["class_map"] != 255).all()  # every valid pixel to the edges has a prediction
    expected = expected_smooth(model, area, "lulc")
    np.testing.assert_allclose(pred["probability"] / 254.0, expected, atol=0.51 / 254)
    assert np.array_equal(pred["class_map"], expected.argmax(axis=0))


def _second_diff_at_borders(prob: np.ndarray, plan: WindowPlan) -> tuple[float, float]:
    """max |d2/dx2| of probabilities on columns next to window borders, and elsewhere."""
    d2 = np.abs(np.diff(prob.astype(np.float64), n=2, axis=-1))  # d2[..., i] is centred on column i+1
    starts = plan.x_starts - plan.area_gx0
    borders = np.unique(np.concatenate([starts, starts + plan.window_px]))
    near = np.zeros(d2.shape[-1], dtype=bool)
    for b in borders:
        near[max(0, b - 3) : b + 2] = True  # d2 columns touching pixels b-2 .. b+1
    return float(d2[..., near].max()), float(d2[..., ~near].max())


@pytest.mark.parametrize("overlap", [0.5, 0.25])
def test_blend_is_seamless_where_naive_tiling_jumps(tmp_path: Path, overlap: float) -> None:
    """Windows disagree (context bias); Hann blending leaves no jump at window borders, a box does."""
    results = {}
    area = make_stack(make_config(tmp_path), 3, 3, encode_position=True)
    for taper in ("hann", "box"):  # same stack; the config change rebuilds the prediction store
        cfg = make_config(tmp_path, overlap_fraction=overlap, blend_taper=taper)
        out = run_infer(cfg, MONTH, ["lulc"], runner=SmoothStandIn(window_bias=1.5))
        plan = WindowPlan.for_area(area, overlap)
        results[taper] = _second_diff_at_borders(read_pred(out["lulc"])["probability"], plan)
    hann_border, hann_inside = results["hann"]
    box_border, box_inside = results["box"]
    assert box_border > 10 * max(box_inside, 1.0)  # the metric does see seams
    assert hann_border <= hann_inside + 1.0  # no larger than inside windows (+1 quantization step)


def test_nodata_windows_are_skipped_and_left_nodata(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    valid = np.ones((672, 672), dtype=bool)
    valid[:224, :224] = False  # top-left chip has no data
    area = make_stack(cfg, 3, 3, valid=valid)
    model = BandStandIn(n_classes=4)
    out = run_infer(cfg, MONTH, ["lulc"], runner=model)
    pred = read_pred(out["lulc"])
    assert (pred["class_map"][:224, :224] == 255).all() and (pred["confidence"][:224, :224] == 255).all()
    assert (pred["probability"][:, :224, :224] == 255).all()
    assert (pred["class_map"][valid] != 255).all()
    n_windows = len(WindowPlan.for_area(area, 0.5).all_windows())
    assert model.calls == -(-(n_windows - 1) // 4)  # the empty window never reaches the model

    cfg2 = make_config(tmp_path / "predict", nodata_policy="predict")
    make_stack(cfg2, 3, 3, valid=valid)
    pred2 = read_pred(run_infer(cfg2, MONTH, ["lulc"], runner=BandStandIn(n_classes=4))["lulc"])
    assert (pred2["class_map"][:112, :112] == 255).all()  # only the skipped window covered these
    assert (pred2["class_map"][112:224, :224] != 255).all()  # partly valid windows filled the rest


@pytest.mark.parametrize("overlap", [0.5, 0.25])
def test_block_by_block_equals_whole(tmp_path: Path, overlap: float) -> None:
    valid = np.ones((672, 896), dtype=bool)
    valid[300:500, 0:150] = False
    preds = []
    for block in (1, 2, 8):  # 12 blocks of 1 chip, 4 uneven blocks, the whole area at once
        # the infer-specific block size (and no read prefetch) for one case, the grid's for the others;
        # each in its own output root (block sizes are not in the key: one root would reuse the first)
        extra = {"infer_block": 1, "prefetch_blocks": False} if block == 1 else {}
        cfg = make_config(tmp_path / f"b{block}", overlap_fraction=overlap, block_size_chips=block, **extra)
        make_stack(cfg, 3, 4, valid=valid)
        preds.append(read_pred(run_infer(cfg, MONTH, ["lulc"], runner=BandStandIn(n_classes=3))["lulc"]))
    for other in preds[:2]:
        for layer in ("class_map", "probability", "confidence"):
            assert np.array_equal(other[layer], preds[2][layer]), layer


def test_rerun_skips_finished_blocks_and_redoes_missing_ones(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, block_size_chips=2)
    make_stack(cfg, 3, 3)
    first = BandStandIn()
    out = run_infer(cfg, MONTH, runner=first)
    assert set(out) == {"lulc", "buildings"} and first.calls > 0
    before = read_pred(out["buildings"])
    again = BandStandIn()
    assert run_infer(cfg, MONTH, runner=again) == out and again.calls == 0
    markers = sorted(Path(marker_dir(os.path.realpath(out["buildings"]))).glob("*.json"))
    assert len(markers) == 4 and json.loads(markers[0].read_text())["n_windows"] > 0
    markers[-1].unlink()  # as if the run had died in the last block, before publishing
    versioned.unpublish(out["buildings"])
    partial = BandStandIn()
    run_infer(cfg, MONTH, ["buildings"], runner=partial)
    assert 0 < partial.calls < first.calls / 2
    after = read_pred(out["buildings"])
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_store_from_other_inputs_is_rebuilt_not_mixed(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, block_size_chips=2)
    make_stack(cfg, 2, 2, seed=1, provenance={"stage": "acquire", "scenes": ["A"]})
    out = run_infer(cfg, MONTH, ["lulc"], runner=BandStandIn())["lulc"]
    old = read_pred(out)
    make_stack(cfg, 2, 2, seed=2, provenance={"stage": "acquire", "scenes": ["B"]})  # new month stack
    model = BandStandIn()
    run_infer(cfg, MONTH, ["lulc"], runner=model)
    assert model.calls > 0  # not skipped: markers from the old inputs are not trusted
    new = read_pred(out)
    assert not np.array_equal(old["probability"], new["probability"])
    prov = zarr.open_group(out, mode="r").attrs["provenance"]
    assert prov["stack"]["scenes"] == ["B"] and prov["model"]["model"] == "BandStandIn"
    assert prov["config_hash"] == cfg.config_hash() and prov["windows"]["stride_px"] == 112


def test_clear_errors(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    with pytest.raises(StackStoreError, match="nyceo acquire"):
        run_infer(cfg, MONTH, ["lulc"], runner=BandStandIn())
    make_stack(cfg, 1, 1)
    with pytest.raises(ValueError, match=r"unknown adapter.*'lulc', 'buildings'"):
        run_infer(cfg, MONTH, ["tim"], runner=BandStandIn())

    class Wrong(BandStandIn):
        def classes(self, adapter: str) -> list[str]:
            return ["only", "two"]

    with pytest.raises(ValueError, match="adapter 'lulc' returned probabilities of shape"):
        run_infer(cfg, MONTH, ["lulc"], runner=Wrong())
    off = make_config(tmp_path / "off")
    area = AreaGrid(ROW0, COL0, 1, 1, Lattice(5.0, 5_017_600.0, 224, 10.0))  # shifted half a pixel
    write_published_stack(off, MONTH, area, seed=1)
    with pytest.raises(StackStoreError, match="not on the chip lattice"):
        run_infer(off, MONTH, ["lulc"], runner=BandStandIn())


def test_adapters_together_equal_adapters_alone(tmp_path: Path) -> None:
    """One read and one input assembly per batch serve every adapter, without mixing their outputs."""
    make_stack(make_config(tmp_path), 2, 2, encode_position=True)
    together = run_infer(make_config(tmp_path, batch_size=3), MONTH, ["lulc", "buildings"], runner=SmoothStandIn(window_bias=1.0))
    both = {a: read_pred(p) for a, p in together.items()}
    assert not np.array_equal(both["lulc"]["probability"], both["buildings"]["probability"])
    for adapter in ("lulc", "buildings"):
        # another batch size, in a fresh root (batch size is not in the key): batches are composed differently
        cfg = make_config(tmp_path / adapter, batch_size=4)
        make_stack(cfg, 2, 2, encode_position=True)
        alone = run_infer(cfg, MONTH, [adapter], runner=SmoothStandIn(window_bias=1.0))
        got = read_pred(alone[adapter])
        assert all(np.array_equal(got[k], both[adapter][k]) for k in got)
