"""Broken adapter files on a one-chip stack: a wrong hash, a missing tensor (through the infer stage's
run), a wrong class count (through `nyceo infer`: one line, exit 1, no traceback). Each error names the
adapter, the file (and tensor) and the fix; the prediction store published earlier for that adapter
stays published and unchanged."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from nyceo import paths, versioned
from nyceo.config import load_config
from nyceo.grid import AreaGrid, Lattice
from nyceo.infer.testing import write_published_stack
from tests.conftest import REPO, write_config

MONTH, ADAPTER = "2024-07", "buildings_nyc"
DROPPED = "encoder.encoder.encoder.7.attn.proj.lora_B.default.weight"


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Config, a published one-chip stack, the demo adapter, and an earlier published pred store."""
    import zarr

    from nyceo.infer.store import create_pred_store, write_layers
    from nyceo.model import make_demo_adapter

    tmp = tmp_path_factory.mktemp("adapter-faults")
    path = write_config(tmp)
    cfg = load_config(path)
    make_demo_adapter(ADAPTER, cfg)
    area = AreaGrid(220, 265, 1, 1, Lattice.from_config(cfg.grid))
    write_published_stack(cfg, MONTH, area, seed=3)
    final = paths.pred_store(cfg, MONTH, ADAPTER)
    key = hashlib.sha256(b"an earlier adapter revision").hexdigest()
    build = versioned.version_path(final, key)
    create_pred_store(build, area, cfg.infer.adapters[ADAPTER].classes, {"stage": "infer"}, key, cfg.grid.crs)
    rng = np.random.default_rng(0)
    h, w = area.height_px, area.width_px
    write_layers(zarr.open_group(build, mode="r+"), (0, h, 0, w), {
        "class_map": rng.integers(0, 2, (h, w), dtype=np.uint8),
        "confidence": rng.integers(0, 255, (h, w), dtype=np.uint8),
        "probability": rng.integers(0, 255, (2, h, w), dtype=np.uint8)})
    versioned.publish(final, key)
    return tmp, path, cfg, final, key


def variant(setup, name: str, **adapter: object) -> Path:
    tmp, path, *_ = setup
    raw = yaml.safe_load(path.read_text())
    raw["infer"]["adapters"][ADAPTER].update(adapter)
    out = tmp / f"{name}.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def broken_folder(setup, name: str) -> Path:
    tmp, _, cfg, *_ = setup
    src = Path(cfg.infer.adapters[ADAPTER].source.replace("{output_root}", cfg.run.output_root))
    dst = tmp / name
    shutil.copytree(src, dst)
    return dst


def infer(config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nyceo.cli", "infer", "--month", MONTH, "-a", ADAPTER,
                           "-c", str(config)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def refusal_via_cli(config: Path) -> str:
    res = infer(config)
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    return next(x for x in res.stderr.splitlines() if x.startswith(f"infer {MONTH} failed:"))


def refusal_via_stage(config: Path) -> str:
    """The stage's run in this process (torch is already imported here: seconds, not a new process)."""
    from nyceo.infer import run_infer
    from nyceo.model.weights import WeightsError

    with pytest.raises(WeightsError) as err:
        run_infer(load_config(config), MONTH, [ADAPTER])
    return str(err.value)


def assert_refused_and_kept(setup, config: Path, refusal, *fragments: str) -> None:
    _, _, _, final, key = setup
    published = Path(versioned.resolve(final))
    before = tree_hashes(published)
    message = refusal(config)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert versioned.published_key(final) == key                 # the earlier store is still the published one
    assert Path(versioned.resolve(final)) == published and tree_hashes(published) == before


def test_wrong_hash(setup):
    folder = broken_folder(setup, "wrong_hash")
    head = folder / "decoder_head.safetensors"
    head.write_bytes(head.read_bytes()[:-4] + b"\x00\x00\x00\x01")
    config = variant(setup, "wrong_hash", source=str(folder))
    assert_refused_and_kept(setup, config, refusal_via_stage, f"adapter {ADAPTER}", str(head), "has sha256",
                            f"infer.adapters.{ADAPTER}.sha256['decoder_head.safetensors'] pins", "fetch it again",
                            f"`nyceo weights fetch -c {config}`")


def test_missing_tensor(setup):
    from safetensors.torch import load_file, save_file

    folder = broken_folder(setup, "missing_tensor")
    lora_path = folder / "adapter_model.safetensors"
    lora = load_file(str(lora_path))
    del lora[DROPPED]
    save_file(lora, str(lora_path))
    pins = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    config = variant(setup, "missing_tensor", source=str(folder), sha256=pins)  # pinned, yet incomplete
    assert_refused_and_kept(setup, config, refusal_via_stage, f"adapter {ADAPTER}",
                            "tensor 'encoder.encoder.7.attn.proj.lora_B",
                            f"missing in {lora_path}", "fetch the file again")


def test_wrong_class_count(setup):
    config = variant(setup, "classes", classes=["background", "building", "water"],
                     colors=["#000000", "#e31a1c", "#419bdf"])
    assert_refused_and_kept(setup, config, refusal_via_cli, f"adapter {ADAPTER}",
                            "decoder_head.safetensors has 2 output classes",
                            f"infer.adapters.{ADAPTER}.classes lists 3", "list exactly the classes")
