"""Sniff probes: named places where a map must look a certain way (Central Park mostly green...).

A probes file (YAML, ``evaluate.probes_file``) lists places — a lon/lat point with a radius, or a
2020 NTA code from the vendored DCP NTAs — each with a rule on the share of some classes among the
map's valid pixels in that place (``min_share`` and/or ``max_share``). A probe applies to every
adapter whose classes include the rule's classes (or to the adapters it names). Pixels belong to a
place by the pixel-centre rule. Each month reports pass / fail / no_data per probe with the measured
share (and the reference's share over the same pixels when a reference was loaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from rasterio.features import geometry_mask

from nyceo.grid import AreaGrid

NODATA = 255


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProbeRule(_Strict):
    classes: list[str] = Field(min_length=1, description="Classes whose combined share is tested.")
    min_share: float | None = Field(None, ge=0, le=1)
    max_share: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _has_bound(self) -> "ProbeRule":
        if self.min_share is None and self.max_share is None:
            raise ValueError("a rule needs min_share and/or max_share")
        return self


class Probe(_Strict):
    name: str
    point_lonlat: tuple[float, float] | None = None
    radius_m: float | None = Field(None, gt=0)
    nta: str | None = None
    adapters: list[str] = Field(default_factory=list, description="Empty: every adapter with the rule's classes.")
    rule: ProbeRule
    note: str = ""

    @model_validator(mode="after")
    def _one_place(self) -> "Probe":
        if (self.nta is None) == (self.point_lonlat is None):
            raise ValueError(f"probe '{self.name}' needs exactly one of point_lonlat (+ radius_m) or nta")
        if self.point_lonlat is not None and self.radius_m is None:
            raise ValueError(f"probe '{self.name}': point_lonlat needs radius_m")
        return self


class ProbesFile(_Strict):
    probes: list[Probe]


def load_probes(path: str) -> list[Probe]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"probes file {path} (evaluate.probes_file) does not exist; fix the path or set it to null")
    try:
        return ProbesFile.model_validate(yaml.safe_load(p.read_text()) or {}).probes
    except ValidationError as exc:
        raise ValueError(f"probes file {path} is invalid: {exc}") from None


def probe_geometry(probe: Probe, crs: str) -> Any:
    """The probe's place in ``crs`` (a buffered point or an NTA polygon)."""
    import shapely
    from pyproj import Transformer

    if probe.point_lonlat is not None:
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(*probe.point_lonlat)
        return shapely.Point(x, y).buffer(float(probe.radius_m), quad_segs=32)
    from nyceo.boundaries import load_ntas

    ntas = load_ntas(crs)
    hit = ntas[ntas["NTA2020"] == probe.nta]
    if hit.empty:
        raise ValueError(f"probe '{probe.name}': NTA code '{probe.nta}' is not among the 2020 NTAs in "
                         "catalogs/data (e.g. MN6491 Central Park); fix the probes file")
    return hit.geometry.iloc[0]


def probe_mask(probe: Probe, area: AreaGrid, crs: str) -> np.ndarray:
    """True on area pixels whose centre lies in the probe's place."""
    geom = probe_geometry(probe, crs)
    return geometry_mask([geom], out_shape=(area.height_px, area.width_px), transform=area.transform, invert=True)


def applies(probe: Probe, adapter: str, classes: list[str]) -> bool:
    if probe.adapters:
        return adapter in probe.adapters
    return all(c in classes for c in probe.rule.classes)


def _share(values: np.ndarray, idx: list[int]) -> tuple[float | None, int]:
    ok = values[values != NODATA]
    if ok.size == 0:
        return None, 0
    return float(np.isin(ok, idx).mean()), int(ok.size)


def evaluate_probe(probe: Probe, mask: np.ndarray, class_map: np.ndarray, classes: list[str],
                   reference: np.ndarray | None = None) -> dict[str, Any]:
    """Pass / fail / no_data of one probe on one map, with the measured shares."""
    missing = [c for c in probe.rule.classes if c not in classes]
    if missing:
        raise ValueError(f"probe '{probe.name}' tests classes {missing} that the adapter lacks {classes}")
    idx = [classes.index(c) for c in probe.rule.classes]
    share, valid = _share(class_map[mask], idx)
    ref_share = _share(reference[mask], idx)[0] if reference is not None else None
    r = probe.rule
    if share is None:
        state = "no_data"
    else:
        ok = (r.min_share is None or share >= r.min_share) and (r.max_share is None or share <= r.max_share)
        state = "pass" if ok else "fail"
    return {"probe": probe.name, "state": state, "classes": "+".join(r.classes), "share": share,
            "min_share": r.min_share, "max_share": r.max_share, "valid_px": valid, "place_px": int(mask.sum()),
            "reference_share": ref_share, "note": probe.note}
