"""The mosaic stage's contract entry (STAGE) and status (areas whose COGs carry the current key)."""

from __future__ import annotations

from typing import Any

from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Status, Upstream
from nyceo.mosaic import layout


def mosaic_status(config: PipelineConfig, month: str) -> Status:
    from nyceo.infer.contract import infer_status
    from nyceo.mosaic.stage import mosaic_up_to_date

    adapters = sorted(config.infer.adapters)
    counts = [mosaic_up_to_date(config, month, a) for a in adapters]
    done, total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if done == total and total:
        return Status("current", done=done, total=total)
    up = infer_status(config, month)
    if up.state != "current":
        return Status("blocked", reason=f"infer is {up.describe()}", done=done, total=total)
    cogs = _published_cogs(config, month)
    if cogs:
        return Status("stale" if done == 0 else "partial", reason="COGs of other inputs or missing areas",
                      done=done, total=total)
    return Status("missing", done=done, total=total)


def _published_cogs(config: PipelineConfig, month: str) -> int:
    import fsspec

    fs, root = fsspec.core.url_to_fs(layout.output_root(config), **layout.storage_options(config))
    return len(fs.glob(f"{root.rstrip('/')}/{month}/cog/*/*.tif"))


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    from nyceo.mosaic.stac import update_catalog
    from nyceo.mosaic.stage import mosaic_month

    outs = mosaic_month(config, month)
    catalog = update_catalog(config, month)
    written = sum(not o.skipped for o in outs)
    return {"status": "done", "cached": written == 0, "areas": len(outs), "up_to_date": len(outs) - written,
            "catalog": catalog}


STAGE = Stage(
    name="mosaic",
    description="borough and city COGs, quicklooks and the STAC catalog of the month's predictions",
    upstreams=(Upstream("infer"),),
    outputs=lambda config, month: {"cogs": f"{layout.output_root(config)}/{month}/cog",
                                   "catalog": layout.out_path(config, layout.CATALOG_REL)},
    status=mosaic_status,
    inputs_key=lambda config, month: None,
    run=run,
    key_settings=("pred key", "mosaic: compression, blocksize, quicklook/thumbnail sizes, probability class",
                  "adapter classes and colours", "area"),
)
