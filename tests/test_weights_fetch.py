"""`nyceo weights fetch` against a real HTTP server on 127.0.0.1 speaking the Hub API (tests/hub_server.py).

Through the real CLI and the real huggingface_hub client (HF_ENDPOINT): revisions resolved to commits,
files verified against the hub's LFS sha256 / git blob id, pins written beside the config and applied
by load_config so an offline run with require_sha256 loads the adapter from the cache; a corrupt
download refused with nothing pinned and nothing left in the cache; offline misses name the command.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save as st_save

from nyceo.config import ConfigError, load_config
from tests.conftest import REPO, write_config
from tests.hub_server import FakeHub, HubServer

ADAPTERS = "acme/NYC-Adapters"
BASE = "acme/TerraMind-base"


def adapter_files(seed: int) -> dict[str, bytes]:
    """A published-format adapter folder (2 classes), small, as bytes."""
    rng = np.random.default_rng(seed)
    lora = {"encoder.encoder.encoder.0.attn.qkv.lora_A.default.weight": rng.normal(size=(2, 8)).astype(np.float32)}
    head = {"head.head.2.weight": rng.normal(size=(2, 4, 1, 1)).astype(np.float32),
            "neck.0.weight": rng.normal(size=(4, 4)).astype(np.float32)}
    cfg = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["attn.qkv"], "seed": seed}
    return {"buildings_nyc/adapter_config.json": json.dumps(cfg).encode(),
            "buildings_nyc/adapter_model.safetensors": st_save(lora),
            "buildings_nyc/decoder_head.safetensors": st_save(head)}


@pytest.fixture(scope="module")
def hub():
    fake = FakeHub()
    base_commit = fake.add_commit(BASE, {"TerraMind_tiny.pt": b"\x80\x02base-checkpoint" * 500},
                                  lfs={"TerraMind_tiny.pt"})
    v1 = fake.add_commit(ADAPTERS, adapter_files(1), refs=("v1.0", "main"),
                         lfs={"buildings_nyc/adapter_model.safetensors", "buildings_nyc/decoder_head.safetensors"})
    with HubServer(fake) as url:
        yield fake, url, base_commit, v1


@pytest.fixture(scope="module")
def config_path(hub, tmp_path_factory):
    fake, url, base_commit, _ = hub
    tmp = tmp_path_factory.mktemp("fetch")
    raw = yaml.safe_load(write_config(tmp).read_text())
    ad = raw["infer"]["adapters"]["buildings_nyc"]
    ad.update(source=f"hf://{ADAPTERS}@v1.0/buildings_nyc", sha256={})
    ad.pop("demo_seed", None)
    raw["infer"]["adapters"] = {"buildings_nyc": ad}
    raw["infer"].update(base_weights=f"hf://{BASE}@{base_commit}/TerraMind_tiny.pt", base_sha256="",
                        require_sha256=True, offline=None, hf_cache_dir=str(tmp / "hf"))
    for section in ("evaluate", "change", "zonal"):
        raw.pop(section, None)
    raw.get("mosaic", {}).pop("probability_classes", None)
    path = tmp / "prod.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def fetch(config: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(config.parent / "hfhome"),
           "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "nyceo.cli", "weights", "fetch", "-c", str(config), *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=REPO)


def test_fetch_pins_verified_commits_and_an_offline_run_loads_them(hub, config_path, monkeypatch):
    fake, url, base_commit, v1 = hub
    res = fetch(config_path, url)
    assert res.returncode == 0, res.stderr
    pins = yaml.safe_load((config_path.parent / "prod.pins.yaml").read_text())
    files = fake.commits[ADAPTERS][v1]
    ad = pins["adapters"]["buildings_nyc"]
    assert ad["requested"] == f"hf://{ADAPTERS}@v1.0/buildings_nyc"
    assert ad["commit"] == v1 and ad["source"] == f"hf://{ADAPTERS}@{v1}/buildings_nyc"
    assert ad["sha256"] == {p.split("/")[1]: hashlib.sha256(b).hexdigest() for p, b in files.items()}
    base_bytes = fake.commits[BASE][base_commit]["TerraMind_tiny.pt"]
    assert pins["base"]["sha256"] == {"TerraMind_tiny.pt": hashlib.sha256(base_bytes).hexdigest()}
    # the hub API was asked for the listing with file metadata, and each file came from the server
    assert any(m == "GET" and f"/api/models/{ADAPTERS}/revision/v1.0" in p and "blobs=true" in p.lower()
               for m, p in fake.requests)
    assert sum(m == "GET" and "/resolve/" in p for m, p in fake.requests) == 4
    # load_config applies the pins; offline, with hashes required, the adapter loads from the cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(config_path, {"infer.offline": True})
    assert cfg.infer.adapters["buildings_nyc"].source == ad["source"]
    assert cfg.infer.base_sha256 == pins["base"]["sha256"]["TerraMind_tiny.pt"]
    from nyceo.model.adapters import load_adapter_files

    loaded = load_adapter_files("buildings_nyc", cfg)
    assert loaded.sha256 == ad["sha256"] and loaded.head_shapes["head.head.2.weight"] == (2, 4, 1, 1)


def test_corrupt_download_is_refused_and_pins_nothing(hub, config_path):
    fake, url, _, v1 = hub
    pin_file = config_path.parent / "prod.pins.yaml"
    before = pin_file.read_bytes()  # written by the previous test
    v2 = fake.add_commit(ADAPTERS, adapter_files(2), refs=("main",),
                         lfs={"buildings_nyc/adapter_model.safetensors", "buildings_nyc/decoder_head.safetensors"})
    good = fake.commits[ADAPTERS][v2]["buildings_nyc/decoder_head.safetensors"]
    bad = bytearray(good)
    bad[-5:] = b"XXXXX"  # same length: only the hash can tell
    fake.serve_instead(ADAPTERS, v2, "buildings_nyc/decoder_head.safetensors", bytes(bad))
    res = fetch(config_path, url, "--revision", "main")
    assert res.returncode == 1
    err = " ".join(res.stderr.split())
    assert f"{ADAPTERS}@{v2}/buildings_nyc/decoder_head.safetensors" in err
    assert f"LFS sha256 {hashlib.sha256(bad).hexdigest()}" in err
    assert f"hub lists {hashlib.sha256(good).hexdigest()}" in err and "nothing was pinned" in err
    assert pin_file.read_bytes() == before  # the earlier pins are untouched
    cache = Path(load_config(config_path, pins=False).infer.hf_cache_dir) / "models--acme--NYC-Adapters"
    assert not (cache / "snapshots" / v2 / "buildings_nyc" / "decoder_head.safetensors").exists()
    assert not (cache / "blobs" / hashlib.sha256(good).hexdigest()).exists()
    assert not list(cache.rglob("*.incomplete"))
    # the verified files of the earlier commit are still in the cache
    assert (cache / "snapshots" / v1 / "buildings_nyc" / "decoder_head.safetensors").is_file()


def test_offline_missing_file_names_the_exact_command(hub, config_path, tmp_path):
    from nyceo.model.adapters import load_adapter_files
    from nyceo.model.weights import WeightsError

    cfg = load_config(config_path, {"infer.offline": True, "infer.hf_cache_dir": str(tmp_path / "empty")})
    with pytest.raises(WeightsError) as err:
        load_adapter_files("buildings_nyc", cfg)
    msg = " ".join(str(err.value).split())
    assert "adapter_config.json" in msg and "offline" in msg
    assert f"`nyceo weights fetch -c {config_path}`" in msg


def test_stale_pin_file_is_an_error_naming_the_command(hub, config_path, tmp_path):
    raw = yaml.safe_load(config_path.read_text())
    raw["infer"]["adapters"]["buildings_nyc"]["source"] = f"hf://{ADAPTERS}@v2.0/buildings_nyc"
    other = tmp_path / "prod.yaml"
    other.write_text(yaml.safe_dump(raw))
    (tmp_path / "prod.pins.yaml").write_bytes((config_path.parent / "prod.pins.yaml").read_bytes())
    with pytest.raises(ConfigError, match=rf"infer.adapters.buildings_nyc.source is hf://{ADAPTERS}@v2.0.*"
                                          rf"`nyceo weights fetch -c {other}`"):
        load_config(other)
