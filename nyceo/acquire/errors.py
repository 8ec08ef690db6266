"""Typed outcomes of acquisition: errors that name the culprit, and reasons a month is skipped."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any


class AcquireError(RuntimeError):
    """Acquisition failed for a reason the user can act on (the message says what to do)."""


class AssetReadError(AcquireError):
    """One asset of one scene could not be read."""


class StackMismatchError(AcquireError):
    """An existing stack.zarr was written with another grid, area or configuration."""


class SkipReason(str, Enum):
    """Why a month (or a block) has no stack."""

    NO_S2_SCENES = "no_s2_scenes"
    NO_CLEAR_S2 = "no_clear_s2"
    NO_S1_SCENES = "no_s1_scenes"
    NO_DEM = "no_dem"


@dataclass(frozen=True)
class Skipped:
    """A month or block that ends without data, with a typed reason and a human detail."""

    reason: SkipReason
    detail: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reason"] = self.reason.value
        return {"status": "skipped", **d}

    def __str__(self) -> str:
        return f"skipped: {self.reason.value}: {self.detail}"
