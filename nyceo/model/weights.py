"""Where weights come from: hub sources pinned to a revision, local folders, sha256 checks.

Sources are ``hf://<repo>@<revision>/<path>`` (a Hugging Face repository pinned to a commit) or
a local path. Hub files are read from the Hugging Face cache; offline (``infer.offline`` or
``HF_HUB_OFFLINE=1``) the cache is the only place looked at (``local_files_only=True``), and a
missing file is an error that names the file and says how to provide it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from nyceo.config import InferConfig, PipelineConfig
from nyceo.io import sha256_file
from nyceo.pins import fetch_command

ADAPTER_FILES: tuple[str, ...] = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "decoder_head.safetensors",
)


class WeightsError(RuntimeError):
    """A weight file is missing, unpinned, or does not match its pinned hash."""


@dataclass(frozen=True)
class Source:
    """A parsed weight source: a hub repository at a revision, or a local path."""

    kind: str  # "hf" or "local"
    location: str  # repo id (hf) or path (local)
    revision: str | None = None
    subpath: str = ""

    def describe(self) -> str:
        if self.kind == "hf":
            return f"hf://{self.location}@{self.revision}/{self.subpath}".rstrip("/")
        return self.location


def parse_source(source: str, output_root: str = "outputs") -> Source:
    """Parse ``hf://owner/repo@revision/sub/path`` or a local path (``{output_root}`` expanded)."""
    if not source.startswith("hf://"):
        local = source.replace("{output_root}", output_root)
        if "://" in local:
            raise WeightsError(f"adapter source '{source}' resolves to the URL {local}: adapter folders must be "
                               "local (hf://... or a path); with a remote run.output_root give the adapters a "
                               "local folder instead of '{output_root}/...'")
        return Source("local", local)
    rest = source[len("hf://"):]
    parts = rest.split("/")
    if len(parts) < 2:
        raise WeightsError(f"source '{source}' is not hf://<owner>/<repo>@<revision>[/<path>]")
    owner, repo_rev, sub = parts[0], parts[1], "/".join(parts[2:])
    repo, _, revision = repo_rev.partition("@")
    if not revision:
        raise WeightsError(
            f"source '{source}' has no pinned revision: write hf://{owner}/{repo}@<commit sha>/{sub}"
        )
    return Source("hf", f"{owner}/{repo}", revision, sub)


def is_offline(infer: InferConfig) -> bool:
    if infer.offline is not None:
        return infer.offline
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def hub_file(src: Source, filename: str, infer: InferConfig, what: str, config_path: str | None = None) -> Path:
    """One file of a hub source from the cache (downloading when online).

    ``config_path`` (the loaded file, ``PipelineConfig._source_path``) makes the error name the
    exact ``nyceo weights fetch -c ...`` command.
    """
    from huggingface_hub import hf_hub_download

    repo_path = f"{src.subpath}/{filename}".strip("/") if filename else src.subpath
    offline = is_offline(infer)
    try:
        return Path(hf_hub_download(
            src.location, repo_path, revision=src.revision, cache_dir=infer.hf_cache_dir,
            local_files_only=offline,
        ))
    except Exception as exc:  # not cached offline, or the hub unreachable / file unknown online
        where = "the Hugging Face cache" + (f" ({infer.hf_cache_dir})" if infer.hf_cache_dir else "")
        raise WeightsError(
            f"{what}: file '{repo_path}' of {src.location}@{src.revision} is not in {where}"
            f"{' and this run is offline' if offline else ''}. Provide it with "
            f"`{fetch_command(config_path)}` on a connected machine (then copy the cache), or point "
            f"the source at a local folder/file in the config. ({type(exc).__name__})"
        ) from None


def check_sha256(path: Path, expected: str, require: bool, what: str, config_key: str,
                 config_path: str | None = None) -> str:
    """sha256 of ``path``; raise if it differs from ``expected`` or (when required) none is pinned.

    ``config_path`` makes the error name the exact ``nyceo weights fetch -c ...`` command."""
    actual = sha256_file(path)
    if not expected:
        if require:
            raise WeightsError(
                f"{what}: file {path} has no pinned sha256 in {config_key}. Its hash is {actual}; "
                f"for hub files `{fetch_command(config_path)}` verifies and pins it; otherwise check it against "
                "the publisher's listing and pin it there (or set infer.require_sha256: false to accept "
                "unpinned files)."
            )
        return actual
    if actual != expected.lower():
        raise WeightsError(
            f"{what}: file {path} has sha256 {actual} but {config_key} pins {expected}. The file is "
            "corrupt, a different revision, or was replaced: delete it and fetch it again "
            f"(`{fetch_command(config_path)}`), or fix the pinned hash."
        )
    return actual


def resolve_base(config: PipelineConfig) -> tuple[Path | None, str]:
    """Local path of the base checkpoint (None for 'none') and its sha256 ('' for 'none')."""
    infer = config.infer
    if infer.base_weights.lower() == "none":
        return None, ""
    src = parse_source(infer.base_weights, config.run.output_root)
    if src.kind == "hf":
        path = hub_file(src, "", infer, "base checkpoint (infer.base_weights)", config._source_path)
    else:
        path = Path(src.location)
        if not path.is_file():
            raise WeightsError(
                f"base checkpoint (infer.base_weights): file {path} does not exist. Fetch it with "
                f"`{fetch_command(config._source_path)}` or set infer.base_weights to the local .pt file."
            )
    digest = check_sha256(path, infer.base_sha256, infer.require_sha256, "base checkpoint", "infer.base_sha256",
                          config._source_path)
    return path, digest
