"""The acquire stage's contract entry (STAGE), its status, and how later stages find the stack.

Status: ``current`` when the published ``stack.zarr`` was built with this configuration's
fingerprint; ``stale`` when it was built with another one (it stays readable while the new build,
``stack@<k16>.zarr``, fills: ``rebuilding``); ``partial`` when only an unfinished build exists;
``skipped`` when the month has no usable data (typed reason).
"""

from __future__ import annotations

import json
from typing import Any

import fsspec

from nyceo import chunks, versioned
from nyceo.acquire import store as st
from nyceo.acquire.stage import STACK_NDIM, Build, locate, run_acquire, skipped_path
from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Status, Upstream


def published_stack(config: PipelineConfig, month: str) -> tuple[str, str] | None:
    """(path of the published stack, its content key) when it matches this configuration, else None."""
    b = locate(config, month)
    ptr = versioned.read_pointer(b.final)
    if not ptr or ptr.get("fingerprint") != b.key:
        return None
    return versioned.resolve(b.final), ptr["key"]


def _read_json(path: str) -> dict[str, Any] | None:
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    with fs.open(p, "r") as f:
        return json.load(f)


def _build_progress(b: Build) -> tuple[int, int | None]:
    plan = st.read_side_json(b.path, "plan.json")
    if plan is None:
        return 0, None
    return len(st.block_records(b.path)), len(plan["blocks"])


def acquire_status(config: PipelineConfig, month: str) -> Status:
    b = locate(config, month)
    ptr = versioned.read_pointer(b.final)
    if ptr and ptr.get("fingerprint") == b.key:
        return Status("current", key=b.key, published_key=ptr["key"], detail={"store": b.final})
    skipped = _read_json(skipped_path(b))
    if skipped is not None:
        return Status("skipped", reason=f"{skipped['reason']}: {skipped['detail']}", key=b.key)
    done, total = _build_progress(b)
    if ptr:
        return Status("stale", reason="published stack was built with other acquisition settings", key=b.key,
                      published_key=ptr["key"], done=done, total=total, rebuilding=total is not None)
    if total is not None:
        return Status("partial", reason="acquisition not finished", key=b.key, done=done, total=total)
    return Status("missing", key=b.key)


def damaged_blocks(config: PipelineConfig, month: str) -> dict[str, list[str]]:
    """Blocks of the published stack whose recorded chunk files are missing or changed size."""
    found = published_stack(config, month)
    if found is None:
        return {}
    path = found[0]
    fs, root = fsspec.core.url_to_fs(path)
    out = {}
    for block_id, rec in st.block_records(locate(config, month).path).items():
        bad = chunks.verify(path, rec.get("chunks", {}), (fs, root))
        if bad:
            out[block_id] = bad
    return out


def invalidate_blocks(config: PipelineConfig, month: str, block_ids: list[str]) -> str:
    """Forget the records of ``block_ids`` of this configuration's build so the next acquisition
    rewrites them; the stack is unpublished meanwhile (downstream stages wait). Returns the fix."""
    b = locate(config, month)
    plan = st.read_side_json(b.path, "plan.json") or {"blocks": {}}
    unknown = sorted(set(block_ids) - set(plan["blocks"]))
    if unknown:
        raise ValueError(f"block(s) {unknown} are not blocks of the {month} stack; blocks: {sorted(plan['blocks'])}")
    for bid in block_ids:
        st.remove_file(st.side_path(b.path, "blocks", f"{bid}.json"))
    st.remove_file(st.side_path(b.path, "complete.json"))
    versioned.unpublish(b.final)
    return f"nyceo acquire --month {month} -c CONFIG"


def block_of_chip(config: PipelineConfig, month: str, chip_id: str) -> str | None:
    plan = st.read_side_json(locate(config, month).path, "plan.json") or {"blocks": {}}
    return next((bid for bid, ids in plan["blocks"].items() if chip_id in ids), None)


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    """Bring the month's stack up to date in this process (the flow maps blocks on dask instead)."""
    res = run_acquire(config, month)
    if res["status"] == "skipped" or res.get("reason"):
        return {"status": "skipped", "reason": f"{res.get('reason')}: {res.get('detail', '')}"}
    return {**res, "cached": bool(res.get("already_published"))}


STAGE = Stage(
    name="acquire",
    description="Sentinel-2 L2A, Sentinel-1 RTC and DEM of the month, harmonized into stack.zarr",
    upstreams=(Upstream("grid"),),
    outputs=lambda config, month: {"stack": locate(config, month).final},
    status=acquire_status,
    inputs_key=lambda config, month: locate(config, month).key,
    run=run,
    key_settings=("grid (lattice, boroughs)", "catalog identity (kind, collections, URL or seed)",
                  "acquire.* except read_threads", "month", "area", "scene IDs offered by the search"),
)
__all__ = ["STAGE", "STACK_NDIM", "acquire_status", "published_stack", "damaged_blocks", "invalidate_blocks"]
