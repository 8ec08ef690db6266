"""The infer stage's contract entry (STAGE), its status, and how downstream stages find its stores.

One build per adapter: ``pred/<adapter>@<k16>.zarr`` (k16 = its pred key: stack content key +
adapter file sha256 + output-affecting infer settings), with per-block records in
``<build>.done/``; published as ``pred/<adapter>.zarr`` (pointer + local link) when every block is
done. Status per month aggregates the adapters: current when every adapter's published key is
the one the configuration asks for.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from nyceo import chunks, paths, versioned
from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Status, Upstream
from nyceo.io import sha256_file
from nyceo.keys import pred_key

ADAPTER_FILES: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors", "decoder_head.safetensors")


@lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(path)


def adapter_hashes(config: PipelineConfig, adapter: str) -> dict[str, str] | None:
    """sha256 of the adapter's three files: the configured pins when all are pinned (the runner
    refuses files that differ), else the files of a local folder; None when neither is known.
    Adapters trained by the pipeline (``train`` recipes) are pinned from their training manifests."""
    from nyceo.train.manifest import pinned_config

    ad = pinned_config(config).infer.adapters[adapter]
    if all(f in ad.sha256 for f in ADAPTER_FILES):
        return {f: ad.sha256[f] for f in ADAPTER_FILES}
    if ad.source.startswith("hf://"):
        return None
    folder = Path(ad.source.replace("{output_root}", config.run.output_root))
    files = [folder / f for f in ADAPTER_FILES]
    if not all(p.is_file() for p in files):
        return None
    return {p.name: _file_sha256(str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files}


def expected_pred_key(config: PipelineConfig, month: str, adapter: str) -> str | None:
    """The pred key the configuration asks for (None while the stack is not current or the adapter
    files are unknown)."""
    from nyceo.acquire.contract import published_stack

    stack = published_stack(config, month)
    hashes = adapter_hashes(config, adapter)
    if stack is None or hashes is None:
        return None
    return pred_key(stack[1], config, adapter, hashes)


def published_pred(config: PipelineConfig, month: str, adapter: str) -> tuple[str, str] | None:
    """(path of the published prediction store, its pred key) of ``adapter`` for ``month``, or None.

    Downstream stages read predictions only through this: a store is published (pointer written)
    only once every block is done, so what this returns is always complete (it may be stale:
    compare its key with :func:`expected_pred_key`).
    """
    final = paths.pred_store(config, month, adapter)
    ptr = versioned.read_pointer(final)
    if not ptr:
        return None
    return versioned.resolve(final), ptr["key"]


def current_pred(config: PipelineConfig, month: str, adapter: str) -> tuple[str, str] | None:
    """Like :func:`published_pred`, but only when the published store is the current one."""
    found = published_pred(config, month, adapter)
    if found is None or found[1] != expected_pred_key(config, month, adapter):
        return None
    return found


def n_blocks(config: PipelineConfig, month: str) -> int:
    from nyceo.acquire.stage import locate
    from nyceo.infer.engine import plan_blocks

    return len(plan_blocks(locate(config, month).area, config.infer.block_size_chips or config.grid.block_size_chips))


def adapter_status(config: PipelineConfig, month: str, adapter: str, total: int | None = None) -> Status:
    from nyceo.infer.store import block_markers

    key = expected_pred_key(config, month, adapter)
    final = paths.pred_store(config, month, adapter)
    published = versioned.published_key(final)
    if key is None:
        return Status("blocked", reason="stack of the month not current (run acquire)", published_key=published)
    total = total if total is not None else n_blocks(config, month)
    build = versioned.version_path(final, key)
    done = sum(m.get("inputs_key") == key for m in block_markers(build).values())
    if published == key:
        return Status("current", key=key, published_key=published, done=total, total=total)
    if published:
        return Status("stale", reason="published predictions were made from other inputs", key=key,
                      published_key=published, done=done, total=total, rebuilding=done > 0)
    return Status("partial" if done else "missing", key=key, done=done, total=total)


def infer_status(config: PipelineConfig, month: str) -> Status:
    adapters = sorted(config.infer.adapters)
    if not adapters:
        return Status("skipped", reason="no adapters configured (infer.adapters)")
    try:
        total = n_blocks(config, month)
    except Exception:  # noqa: BLE001 - no grid yet
        total = None
    per = {a: adapter_status(config, month, a, total) for a in adapters}
    order = ("blocked", "missing", "partial", "stale", "current")
    state = min((s.state for s in per.values()), key=order.index)
    if state == "missing" and any(s.state in ("current", "stale", "partial") for s in per.values()):
        state = "partial"
    reasons = "; ".join(f"{a}: {s.state}" for a, s in per.items() if s.state != "current")
    return Status(state, reason=reasons, done=sum(s.done for s in per.values()),
                  total=sum(s.total or 0 for s in per.values()) or None,
                  rebuilding=any(s.rebuilding for s in per.values()),
                  detail={a: s.to_dict() for a, s in per.items()})


def damaged_blocks(config: PipelineConfig, month: str, adapter: str) -> dict[str, list[str]]:
    """Blocks of the published store of ``adapter`` whose recorded chunk files are missing or resized."""
    from nyceo.infer.store import block_markers

    found = published_pred(config, month, adapter)
    if found is None:
        return {}
    import fsspec

    fs_root = fsspec.core.url_to_fs(found[0])
    return {b: bad for b, m in block_markers(found[0]).items() if (bad := chunks.verify(found[0], m.get("chunks", {}), fs_root))}


def invalidate_pred_blocks(config: PipelineConfig, month: str, adapter: str, block_ids: list[str]) -> None:
    """Unpublish a damaged store and forget ``block_ids`` so the next infer run rewrites them."""
    from nyceo.infer.store import remove_marker

    found = published_pred(config, month, adapter)
    if found is None:
        return
    for bid in block_ids:
        remove_marker(found[0], bid)
    versioned.unpublish(paths.pred_store(config, month, adapter))


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    from nyceo.infer.stage import run_infer

    before = infer_status(config, month)
    stores = run_infer(config, month)
    return {"status": "done", "cached": before.state == "current", "stores": stores}


STAGE = Stage(
    name="infer",
    description="TerraMind + LoRA adapters over the month's stack, tiled and blended into pred/<adapter>.zarr",
    upstreams=(Upstream("acquire"),),
    outputs=lambda config, month: {a: paths.pred_store(config, month, a) for a in sorted(config.infer.adapters)},
    status=infer_status,
    inputs_key=lambda config, month: "+".join(str(expected_pred_key(config, month, a))
                                              for a in sorted(config.infer.adapters)),
    run=run,
    key_settings=("stack content key", "adapter file sha256", "adapter classes/backbone/normalization",
                  "infer: overlap, blend, TTA, nodata policy, fill fallback, amp dtype, cpu_amp, sdpa, base weights",
                  "TiM sampling (TiM adapters)"),
)
