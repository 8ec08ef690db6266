"""Shared test fixtures. Prefect runs on a real (ephemeral, local) API; nothing is mocked."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml

# Before Prefect is imported anywhere: a private home, no analytics, no configured remote API.
_PREFECT_HOME = tempfile.mkdtemp(prefix="nyceo-prefect-")
os.environ["PREFECT_HOME"] = _PREFECT_HOME
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

REPO = Path(__file__).resolve().parent.parent
TEST_DATA = REPO / "tests" / "data"   # vendored fixtures, see tests/data/SOURCES.md


@pytest.fixture(scope="session")
def prefect_api():
    """A real Prefect API (temporary local server + SQLite) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def write_config(tmp_path: Path, base: str = "configs/demo.yaml", **sections: dict) -> Path:
    """A copy of ``base`` with output_root under ``tmp_path`` and ``sections`` merged in."""
    raw = yaml.safe_load((REPO / base).read_text())
    raw.pop("train", None)  # tests use the seeded untrained demo adapters; training has its own tests
    if "infer" in raw:  # tests check the production numerics (float32, sampled TiM tokens), not the demo's
        raw["infer"].update(amp_dtype="float32", cpu_amp=False, tim_temperature=1.0, tim_top_p=0.8)
    raw.setdefault("run", {})["output_root"] = str(tmp_path / "outputs")
    if raw.get("catalog", {}).get("kind") == "embedded":
        raw["catalog"]["embedded_root"] = str(tmp_path / "embedded")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for the real servers the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
