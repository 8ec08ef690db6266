"""Change areas per borough and city, with the expected false-change area beside each figure.

Figures come from the published transition raster of each area (pixel counts x pixel area), so
they add up exactly to its pixel counts: per area, the transitions + no change + uncertain = its
valid pixels. The expected false-change area of a transition is the null's false-change rate of
that transition in the area (``nyceo.change.noise``: the gate applied to two predictions of the
same month) times the area's valid pixels: what pure noise would have painted as that change.
Gains and losses per class and new / vanished building area are sums over transitions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nyceo.change import codes
from nyceo.change.noise import false_rate

COLUMNS = ("area", "kind", "name", "code", "from_class", "to_class", "pixels", "area_km2", "expected_false_km2")


def _row(area: str, kind: str, name: str, code: int | None, frm: str | None, to: str | None, px: int,
         px_km2: float, false_px: float | None) -> dict[str, Any]:
    return {"area": area, "kind": kind, "name": name, "code": code, "from_class": frm, "to_class": to,
            "pixels": int(px), "area_km2": round(px * px_km2, 6),
            "expected_false_km2": None if false_px is None else round(false_px * px_km2, 6)}


def area_rows(area: str, transition: np.ndarray, classes: list[str], summary: dict[str, Any], city: str,
              px_km2: float, building_index: int | None) -> list[dict[str, Any]]:
    """Rows for one area from its transition raster (uint8, NODATA outside)."""
    k = len(classes)
    counts = np.bincount(transition.ravel(), minlength=256)
    n_valid = int(counts[: codes.NODATA].sum())
    rows, false_by_code = [], {}
    for code in range(k * k):
        a, b = codes.decode(code, k)
        if a == b:
            continue
        false_by_code[code] = false_rate(summary, area, city, code) * n_valid
        rows.append(_row(area, "transition", codes.transition_name(code, classes), code, classes[a], classes[b],
                         counts[code], px_km2, false_by_code[code]))
    for code in (codes.NO_CHANGE, codes.UNCERTAIN):
        rows.append(_row(area, codes.transition_name(code, classes).replace(" ", "_"),
                         codes.transition_name(code, classes), code, None, None, counts[code], px_km2, None))
    for c, name in enumerate(classes):
        gain = [x for x in false_by_code if x % k == c]
        loss = [x for x in false_by_code if x // k == c]
        rows.append(_row(area, "gain", name, None, None, name, sum(counts[x] for x in gain), px_km2,
                         sum(false_by_code[x] for x in gain)))
        rows.append(_row(area, "loss", name, None, name, None, sum(counts[x] for x in loss), px_km2,
                         sum(false_by_code[x] for x in loss)))
    if building_index is not None:
        new = [x for x in false_by_code if x % k == building_index]
        gone = [x for x in false_by_code if x // k == building_index]
        rows.append(_row(area, "building_new", classes[building_index], None, None, None,
                         sum(counts[x] for x in new), px_km2, sum(false_by_code[x] for x in new)))
        rows.append(_row(area, "building_vanished", classes[building_index], None, None, None,
                         sum(counts[x] for x in gone), px_km2, sum(false_by_code[x] for x in gone)))
    rows.append(_row(area, "valid", "pixels predicted in both months", None, None, None, n_valid, px_km2, None))
    return rows


def write_tables(rows: list[dict[str, Any]], csv_path: str, json_path: str, meta: dict[str, Any],
                 storage_options: dict[str, Any] | None = None) -> None:
    """CSV (one row per figure) and JSON (the same rows + meta), atomically."""
    import io

    import pandas as pd

    from nyceo.io import write_bytes_atomic, write_json_atomic

    buf = io.StringIO()
    pd.DataFrame(rows, columns=list(COLUMNS)).astype({"code": "Int64"}).to_csv(buf, index=False)
    write_bytes_atomic(csv_path, buf.getvalue().encode(), storage_options)
    write_json_atomic(json_path, {**meta, "columns": list(COLUMNS), "rows": rows}, storage_options)
