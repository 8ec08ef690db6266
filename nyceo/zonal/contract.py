"""The zonal stage's contract entry: per-month zonal figures, feeds and exposure from the predictions."""

from __future__ import annotations

from nyceo.contract import Stage, Upstream
from nyceo.zonal import stage

STAGE = Stage(
    name="zonal",
    description="Class areas and shares per borough / NTA / user polygon layer (exact pixel coverage, cached), "
    "heat-island (impervious, vegetation, NDVI on a 100 m grid) and stormwater feeds, hazard exposure",
    upstreams=(Upstream("infer"),),
    outputs=stage.outputs,
    status=stage.status,
    inputs_key=stage.inputs_key,
    run=stage.run,
    key_settings=("zonal", "infer.adapters.*.classes", "grid.crs", "grid.origin_*", "grid.resolution_m"),
)
