"""The pin file of a configuration: verified weight revisions and sha256, written by a command.

``nyceo weights fetch -c configs/default.yaml`` resolves each hub source (the base checkpoint and
every ``hf://`` adapter) to a commit, downloads its files, verifies each one against the hub's own
hash for that commit (LFS sha256, or the git blob id of a file stored in git) and writes
``configs/default.pins.yaml`` beside the configuration::

    base:
      requested: hf://ibm-esa-geospatial/TerraMind-1.0-base@fb96c70.../TerraMind_v1_base.pt
      source: hf://ibm-esa-geospatial/TerraMind-1.0-base@fb96c70.../TerraMind_v1_base.pt
      commit: fb96c70...
      sha256: {TerraMind_v1_base.pt: 83c3a09...}
    adapters:
      lulc_nyc: {requested: hf://...@main/lulc_nyc, source: hf://...@<commit>/lulc_nyc, commit: ..., sha256: {...}}

``load_config`` applies the pin file when it exists: a source equal to ``requested`` becomes
``source`` (the resolved commit) with its sha256 pinned. A pin file that no longer matches the
configuration (another source, an adapter it does not define, a conflicting hash) is an error
naming the command that rewrites it — never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

class PinsError(ValueError):
    """A pin file does not match the configuration it sits beside."""


def pin_file_path(config_path: str | Path) -> Path:
    """``configs/default.yaml`` -> ``configs/default.pins.yaml``."""
    path = Path(config_path)
    return path.with_name(f"{path.stem}.pins.yaml")


def fetch_command(config_path: str | Path | None) -> str:
    """The exact command that (re)writes the pins of ``config_path``."""
    return f"nyceo weights fetch -c {config_path if config_path else '<config>'}"


def _conflict(pin_path: Path, config_path: Path, what: str) -> PinsError:
    return PinsError(
        f"pin file {pin_path} does not match {config_path}: {what}. Run `{fetch_command(config_path)}` "
        f"to pin the configured sources again (or delete {pin_path})."
    )


def _merge_hashes(current: dict[str, str], pinned: dict[str, str], pin_path: Path, config_path: Path,
                  key: str) -> dict[str, str]:
    for fname, digest in pinned.items():
        if current.get(fname) and current[fname].lower() != digest.lower():
            raise _conflict(pin_path, config_path, f"{key}['{fname}'] is {current[fname]} in the "
                                                   f"configuration but {digest} in the pin file")
    return {**current, **pinned}


def _apply_base(infer: dict[str, Any], entry: dict[str, Any], pin_path: Path, config_path: Path,
                default_base: str) -> None:
    current = infer.get("base_weights", default_base)
    if current != entry["requested"]:
        raise _conflict(pin_path, config_path, f"infer.base_weights is {current}, the pins were fetched "
                                               f"for {entry['requested']}")
    (fname, digest), = entry["sha256"].items()
    existing = infer.get("base_sha256") or ""
    if existing and existing.lower() != digest.lower():
        raise _conflict(pin_path, config_path, f"infer.base_sha256 is {existing} in the configuration but "
                                               f"{digest} ({fname}) in the pin file")
    infer["base_weights"], infer["base_sha256"] = entry["source"], digest


def _apply_adapter(infer: dict[str, Any], name: str, entry: dict[str, Any], pin_path: Path,
                   config_path: Path) -> None:
    adapters = infer.get("adapters") or {}
    if name not in adapters:
        raise _conflict(pin_path, config_path, f"it pins adapter '{name}', which infer.adapters does not define")
    ad = adapters[name]
    if ad.get("source") != entry["requested"]:
        raise _conflict(pin_path, config_path, f"infer.adapters.{name}.source is {ad.get('source')}, the pins "
                                               f"were fetched for {entry['requested']}")
    ad["sha256"] = _merge_hashes(dict(ad.get("sha256") or {}), entry["sha256"], pin_path, config_path,
                                 f"infer.adapters.{name}.sha256")
    ad["source"] = entry["source"]


def apply_pins(raw: dict[str, Any], config_path: str | Path, default_base: str) -> Path | None:
    """Apply the pin file beside ``config_path`` to the raw configuration mapping (in place).

    ``default_base`` is infer.base_weights when the configuration does not set it. Returns the pin
    file's path, or None when there is none.
    """
    config_path = Path(config_path)
    pin_path = pin_file_path(config_path)
    if not pin_path.is_file():
        return None
    try:
        pins = yaml.safe_load(pin_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PinsError(f"pin file {pin_path} is not valid YAML ({exc}); run `{fetch_command(config_path)}` "
                        "to write it again") from None
    if not isinstance(pins, dict) or set(pins) - {"base", "adapters"}:
        raise PinsError(f"pin file {pin_path} must hold only 'base' and 'adapters'; run "
                        f"`{fetch_command(config_path)}` to write it again")
    infer = raw.setdefault("infer", {})
    if pins.get("base"):
        _apply_base(infer, pins["base"], pin_path, config_path, default_base)
    for name, entry in (pins.get("adapters") or {}).items():
        _apply_adapter(infer, name, entry, pin_path, config_path)
    return pin_path


def render_pins(pins: dict[str, Any], command: str, stamp: str) -> str:
    """The pin file's text: a header saying where it came from, then the YAML."""
    header = (f"# Written by `{command}` at {stamp}. Every file was verified against the hub's own hash\n"
              "# for the commit below (LFS sha256; git blob id for files stored in git). Do not edit:\n"
              "# run the command again. load_config applies it on top of the configuration beside it.\n")
    return header + yaml.safe_dump(pins, sort_keys=False)
