"""The zonal stage's contract entry: per-month zonal figures, feeds and exposure from the predictions."""

from __future__ import annotations

from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Upstream
from nyceo.io import is_remote
from nyceo.zonal import stage


def enabled(config: PipelineConfig) -> str | None:
    """The zonal stage writes to a local output root only (object storage: not yet)."""
    if is_remote(config.run.output_root):
        return (f"zonal outputs need a local run.output_root (got {config.run.output_root}); object storage is "
                "not supported by the zonal stage yet")
    return None


STAGE = Stage(
    name="zonal",
    description="Class areas and shares per borough / NTA / user polygon layer (exact pixel coverage, cached), "
    "heat-island (impervious, vegetation, NDVI on a 100 m grid) and stormwater feeds, hazard exposure",
    upstreams=(Upstream("infer"),),
    outputs=stage.outputs,
    status=stage.status,
    inputs_key=stage.inputs_key,
    run=stage.run,
    enabled=enabled,
    key_settings=("zonal", "infer.adapters.*.classes", "grid.crs", "grid.origin_*", "grid.resolution_m"),
)
