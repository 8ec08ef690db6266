"""Pull the fields the catalog needs out of a prediction store's provenance.

The infer stage records model/adapter identity under ``model`` (or ``adapter``) and the input
stack's provenance under ``stack``; the exact nesting is the infer stage's business, so these
helpers search for the named keys rather than hard-coding one layout.
"""

from __future__ import annotations

import re
from typing import Any

SCENE_KEY = re.compile(r"scene|item_id|items", re.I)
MODEL_KEYS = ("source", "revision", "sha256", "backbone", "name")


def _walk_strings(obj: Any) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _walk_strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in _walk_strings(v)]
    return []


def scene_ids(provenance: dict[str, Any]) -> list[str]:
    """Sorted unique source scene IDs found under any key naming scenes/items."""
    found: set[str] = set()

    def visit(obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                if SCENE_KEY.search(str(k)):
                    found.update(_walk_strings(v))
                else:
                    visit(v)
        elif isinstance(obj, list):
            for v in obj:
                visit(v)

    visit(provenance)
    return sorted(found)


def model_fields(provenance: dict[str, Any]) -> dict[str, Any]:
    """Adapter name, source, revision, file sha256s and model backbone, where recorded."""
    out: dict[str, Any] = {}
    if isinstance(provenance.get("adapter"), str):
        out["adapter_name"] = provenance["adapter"]
    for scope in (provenance.get("model"), provenance.get("adapter"), provenance):
        if not isinstance(scope, dict):
            continue
        for key in MODEL_KEYS:
            name = "model" if key == "backbone" else f"adapter_{key}"
            value = scope.get(key)
            if name in out or value is None or (key != "sha256" and isinstance(value, (dict, list))):
                continue
            out[name] = value
    return out
