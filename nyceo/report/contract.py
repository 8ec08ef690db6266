"""The report stage's contract entry: the month's HTML/Markdown report from every other stage's outputs."""

from __future__ import annotations

from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Upstream
from nyceo.io import is_remote
from nyceo.report import stage


def enabled(config: PipelineConfig) -> str | None:
    """The report stage writes to a local output root only (object storage: not yet)."""
    if is_remote(config.run.output_root):
        return (f"report outputs need a local run.output_root (got {config.run.output_root}); object storage is "
                "not supported by the report stage yet")
    return None


STAGE = Stage(
    name="report",
    description="Run report <month>/report/index.html + report.md: city maps, change maps, class areas per borough, "
    "heat grids, evaluation figures, time series, then the zonal / exposure / stormwater tables",
    # zonal is required (the tables); everything else it shows is read when present.
    upstreams=(Upstream("zonal"), Upstream("infer", optional=True)),
    outputs=stage.outputs,
    status=stage.status,
    inputs_key=stage.inputs_key,
    run=stage.run,
    enabled=enabled,
    key_settings=("report", "zonal.hazards"),
)
