"""The infer stage's contract entry (STAGE) and how downstream stages find its published stores."""

from __future__ import annotations

from nyceo import paths, versioned
from nyceo.config import PipelineConfig


def published_pred(config: PipelineConfig, month: str, adapter: str) -> tuple[str, str] | None:
    """(path of the published prediction store, its pred key) of ``adapter`` for ``month``, or None.

    Downstream stages read predictions only through this: a store is published (pointer written)
    only once every block is done, so what this returns is always complete.
    """
    final = paths.pred_store(config, month, adapter)
    ptr = versioned.read_pointer(final)
    if not ptr:
        return None
    return versioned.resolve(final), ptr["key"]
