"""Transition codes of the change rasters (uint8) and their colours and names.

Transition raster: for a pixel that changed from class ``a`` to class ``b`` (K classes) the code is
``a * K + b`` (so 0 .. K*K-1; a != b); :data:`NO_CHANGE` (253) where both months agree or the shift
is within the noise floor with the same label, :data:`UNCERTAIN` (254) where the labels differ but
the change is not established (a month not confident enough, or the probability shift within the
floor), :data:`NODATA` (255) where either month has no prediction. Gain / loss rasters hold the
class gained / lost (0 .. K-1) with the same three special codes. K <= 15 keeps K*K below 253.
"""

from __future__ import annotations

import numpy as np

NODATA = 255
UNCERTAIN = 254
NO_CHANGE = 253
MAX_CLASSES = 15

# building change raster
BUILDING_NONE, BUILDING_NEW, BUILDING_VANISHED = 0, 1, 2
# persistence (confirmation) raster
PERSIST_NONE, PERSIST_PROVISIONAL, PERSIST_CONFIRMED, PERSIST_DROPPED = 0, 1, 2, 3
PERSIST_NAMES = {0: "no change", 1: "provisional", 2: "confirmed", 3: "dropped (reverted / not supported)"}
# delta-probability raster: value = DP_OFFSET + round(dp_u8 / 2), dp_u8 = (p_to - p_from) * 254
DP_OFFSET = 127
DP_SCALE = 2.0 / 254.0  # probability per DN: dp = (value - 127) * 2 / 254


def check_classes(classes: list[str]) -> int:
    k = len(classes)
    if not 2 <= k <= MAX_CLASSES:
        raise ValueError(f"change layers need 2..{MAX_CLASSES} classes (K*K codes must fit below {NO_CHANGE}); "
                         f"got {k} ({classes})")
    return k


def transition_code(from_cls: np.ndarray | int, to_cls: np.ndarray | int, n_classes: int) -> np.ndarray | int:
    """``from * K + to`` (uint8 for arrays)."""
    if isinstance(from_cls, np.ndarray):
        return (from_cls.astype(np.uint16) * n_classes + to_cls).astype(np.uint8)
    return int(from_cls) * n_classes + int(to_cls)


def decode(code: int, n_classes: int) -> tuple[int, int]:
    """(from, to) of a transition code; ValueError for the special codes."""
    if code >= n_classes * n_classes:
        raise ValueError(f"code {code} is not a transition for {n_classes} classes")
    return divmod(int(code), n_classes)


def transition_name(code: int, classes: list[str]) -> str:
    special = {NO_CHANGE: "no change", UNCERTAIN: "uncertain", NODATA: "no data"}
    if code in special:
        return special[code]
    a, b = decode(code, len(classes))
    return f"{classes[a]} -> {classes[b]}"


def transition_colormap(colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    """Colour of each transition = colour of the class gained; no change light grey, uncertain
    dark grey, nodata transparent."""
    from nyceo.mosaic.cog import hex_to_rgba

    k = len(colors)
    cmap = {a * k + b: hex_to_rgba(colors[b]) for a in range(k) for b in range(k)}
    cmap.update({NO_CHANGE: (230, 230, 230, 255), UNCERTAIN: (120, 120, 120, 255), NODATA: (0, 0, 0, 0)})
    return cmap


def class_change_colormap(colors: list[str]) -> dict[int, tuple[int, int, int, int]]:
    """Gain / loss rasters: class colours plus the special codes."""
    from nyceo.mosaic.cog import hex_to_rgba

    cmap = {i: hex_to_rgba(c) for i, c in enumerate(colors)}
    cmap.update({NO_CHANGE: (230, 230, 230, 255), UNCERTAIN: (120, 120, 120, 255), NODATA: (0, 0, 0, 0)})
    return cmap
