"""``nyceo weights fetch``: pin hub weights to a commit, verified against the hub's own hashes.

For the base checkpoint and every ``hf://`` adapter of a configuration: ask the hub API for the
revision's file list with file metadata (``HfApi.model_info(files_metadata=True)``: the commit sha,
and per file its LFS sha256, or its git blob id when the file is stored in git), download each file
at that commit into the Hugging Face cache, and compare it with the hub's hash — never with a hash
computed from the download itself. A mismatch removes the downloaded file from the cache (blob and
snapshot link) and fails; the pin file (``nyceo.pins``) is written only when every file verified,
atomically, so a failed fetch pins nothing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nyceo.config import PipelineConfig
from nyceo.io import sha256_file, write_bytes_atomic
from nyceo.model.weights import ADAPTER_FILES, Source, WeightsError, is_offline, parse_source
from nyceo.pins import fetch_command, pin_file_path, render_pins


@dataclass(frozen=True)
class HubFile:
    """What the hub says about one file at one commit."""

    path: str
    size: int | None
    lfs_sha256: str | None
    blob_id: str | None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def hub_listing(repo: str, revision: str, command: str) -> tuple[str, dict[str, HubFile]]:
    """(commit sha, {path: HubFile}) of ``repo`` at ``revision`` from the hub API."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True)
    except Exception as exc:  # network down, repo or revision unknown, hub error
        raise WeightsError(
            f"could not list {repo}@{revision} on the Hugging Face hub ({_first_line(exc)}). "
            f"`{command}` needs network access to the hub (HF_ENDPOINT); check the repository and "
            "revision in the configuration (or --revision)."
        ) from None
    if not info.sha:
        raise WeightsError(f"the hub did not resolve {repo}@{revision} to a commit; pin a commit sha instead")
    files = {
        s.rfilename: HubFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None, s.blob_id)
        for s in info.siblings or []
    }
    return info.sha, files


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (how the hub names files stored in git, not LFS)."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _discard_cached(local: Path) -> None:
    """Remove a downloaded file from the HF cache: the blob it links to and the snapshot link."""
    blob = local.resolve()
    for p in (local, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def verify_download(local: Path, meta: HubFile, where: str, command: str) -> str:
    """sha256 of ``local`` after checking it against the hub's hash; a mismatch is discarded."""
    digest = sha256_file(local)
    if meta.lfs_sha256:
        expected, actual, kind = meta.lfs_sha256.lower(), digest, "LFS sha256"
    elif meta.blob_id:
        expected, actual, kind = meta.blob_id.lower(), git_blob_sha1(local), "git blob id"
    else:
        raise WeightsError(f"{where}: the hub lists no hash for this file (no LFS sha256, no blob id); "
                           "nothing was pinned")
    if actual != expected:
        _discard_cached(local)
        raise WeightsError(
            f"{where}: the downloaded file has {kind} {actual} but the hub lists {expected} for this "
            "commit: the download was corrupted or altered on the way (proxy, mirror, disk). It was "
            f"removed from the cache and nothing was pinned; run `{command}` again."
        )
    return digest


def _fetch_file(repo: str, commit: str, path: str, listing: dict[str, HubFile], cache_dir: str | None,
                command: str) -> str:
    from huggingface_hub import hf_hub_download

    where = f"{repo}@{commit}/{path}"
    if path not in listing:
        raise WeightsError(f"{where}: the hub lists no such file at this commit; check the source's folder "
                           "and revision in the configuration")
    try:
        local = Path(hf_hub_download(repo, path, revision=commit, cache_dir=cache_dir))
    except Exception as exc:
        raise WeightsError(f"{where}: download failed ({_first_line(exc)}); nothing was pinned. "
                           f"Run `{command}` again on a connected machine.") from None
    return verify_download(local, listing[path], where, command)


def fetch_source(src: Source, requested: str, files: list[str], cache_dir: str | None, command: str,
                 revision: str | None = None) -> dict[str, Any]:
    """Resolve, download and verify ``files`` (paths under the source's folder); a pin entry.

    ``requested`` is the source as the configuration writes it (the pin applies while it is unchanged)."""
    rev = revision or src.revision or "main"
    commit, listing = hub_listing(src.location, rev, command)
    hashes = {}
    for fname in files:
        path = f"{src.subpath}/{fname}".strip("/") if fname else src.subpath
        hashes[Path(path).name] = _fetch_file(src.location, commit, path, listing, cache_dir, command)
    source = f"hf://{src.location}@{commit}/{src.subpath}".rstrip("/")
    return {"requested": requested, "source": source, "commit": commit, "sha256": hashes}


def _check_configured(entry: dict[str, Any], pinned: dict[str, str], where: str) -> None:
    """A hash the configuration already pins must equal the verified one (same revision only)."""
    for fname, digest in pinned.items():
        got = entry["sha256"].get(fname)
        if digest and got and got != digest.lower():
            raise WeightsError(
                f"{where}: {fname} verified against the hub at {entry['commit']} has sha256 {got}, but the "
                f"configuration pins {digest}: the configured hash is for another revision or wrong. "
                "Remove that hash from the configuration (the pin file will hold the verified one)."
            )


def fetch_pins(config: PipelineConfig, revision: str | None = None) -> dict[str, Any]:
    """Fetch and verify every hub source of ``config``; the pin document (not yet written).

    ``revision`` replaces the adapters' configured revision (a branch, tag or commit); the base
    checkpoint keeps its own pinned revision.
    """
    infer = config.infer
    command = fetch_command(config._source_path)
    if is_offline(infer):
        raise WeightsError(f"`{command}` needs the network, but this run is offline (infer.offline or "
                           "HF_HUB_OFFLINE=1); run it on a connected machine and copy the cache")
    pins: dict[str, Any] = {}
    if infer.base_weights.lower() != "none":
        src = parse_source(infer.base_weights, config.run.output_root)
        if src.kind == "hf":
            pins["base"] = fetch_source(src, infer.base_weights, [""], infer.hf_cache_dir, command)
            _check_configured(pins["base"], {Path(src.subpath).name: infer.base_sha256}, "base checkpoint")
    adapters = {}
    for name, ad in infer.adapters.items():
        src = parse_source(ad.source, config.run.output_root)
        if src.kind != "hf":
            continue
        entry = fetch_source(src, ad.source, list(ADAPTER_FILES), infer.hf_cache_dir, command, revision)
        if revision is None or entry["commit"] == src.revision:
            _check_configured(entry, ad.sha256, f"adapter {name}")
        adapters[name] = entry
    if adapters:
        pins["adapters"] = adapters
    return pins


def write_pin_file(config_path: str | Path, pins: dict[str, Any], pin_path: str | Path | None = None) -> Path:
    """Write ``pins`` atomically to the configuration's pin file (or ``pin_path``)."""
    target = Path(pin_path) if pin_path else pin_file_path(config_path)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = render_pins(pins, fetch_command(config_path), stamp)
    write_bytes_atomic(os.fspath(target), text.encode())
    return target
