"""The report stage's contract entry: the month's HTML/Markdown report from every other stage's outputs."""

from __future__ import annotations

from nyceo.contract import Stage, Upstream
from nyceo.report import stage

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
    key_settings=("report", "zonal.hazards"),
)
