"""Where the change stage writes, and its keys.

Under the output root (``mosaic.output_root`` or ``run.output_root``)::

    <M>/change/<adapter>/noise_floor.json                   measured null (shared by both pairs), key
    <M>/change/<adapter>/<pair>/record.json                 done / skipped (typed reason), key: written last
    <M>/change/<adapter>/<pair>/<area>_<layer>.tif          transition, gain, loss, confidence,
                                                            building, building_dp (building adapters)
    <M>/change/<adapter>/<pair>/<area>_persistence.tif      provisional / confirmed / dropped
    <M>/change/<adapter>/<pair>/persistence.json            its key (pair key + neighbour months' pred keys)
    <M>/change/<adapter>/<pair>/areas.csv, areas.json       km² per borough with expected false-change km²
    <M>/change/<adapter>/<pair>/quicklook/<area>_transition.png

Keys (sha256 of canonical JSON, ``nyceo.keys.digest``): only what changes output values.
"""

from __future__ import annotations

from typing import Any

from nyceo.config import PipelineConfig
from nyceo.keys import digest
from nyceo.mosaic import layout as mlayout
from nyceo.paths import check_month

CODE_VERSION = "1"  # bump when a code change alters change outputs (lead: move into nyceo.keys.CODE_VERSIONS)
LAYERS = ("transition", "gain", "loss", "confidence", "building", "building_dp")


def pair_rel(month: str, adapter: str, pair: str, name: str) -> str:
    return f"{check_month(month)}/change/{adapter}/{pair}/{name}"


def noise_rel(month: str, adapter: str) -> str:
    return f"{check_month(month)}/change/{adapter}/noise_floor.json"


def out(config: PipelineConfig, rel: str) -> str:
    return mlayout.out_path(config, rel)


def adapters(config: PipelineConfig) -> list[str]:
    names = config.change.adapters if config.change.adapters is not None else sorted(config.infer.adapters)
    unknown = [a for a in names if a not in config.infer.adapters]
    if unknown:
        raise ValueError(f"change.adapters names {unknown}, not in infer.adapters ({sorted(config.infer.adapters)})")
    return list(names)


def building_index(config: PipelineConfig, adapter: str) -> int | None:
    name = config.change.building_class.get(adapter)
    if name is None:
        return None
    classes = list(config.infer.adapters[adapter].classes)
    if name not in classes:
        raise ValueError(f"change.building_class.{adapter} = '{name}' is not one of its classes {classes}")
    return classes.index(name)


def noise_key(config: PipelineConfig, adapter: str, pred_key: str) -> str:
    """The null depends on the month's prediction inputs (the pred key names stack, adapter files and
    infer settings), how it is sampled, and the gate used to count its false changes."""
    c = config.change
    return digest({"stage": "change-noise", "code": CODE_VERSION, "pred": pred_key,
                   "noise": c.noise.model_dump(mode="json"), "false_alarm_rate": c.false_alarm_rate,
                   "min_confidence": c.min_confidence, "building_class": c.building_class.get(adapter),
                   "boroughs": config.grid.boroughs})


def change_settings(config: PipelineConfig, adapter: str) -> dict[str, Any]:
    c, m, ad = config.change, config.mosaic, config.infer.adapters[adapter]
    return {"false_alarm_rate": c.false_alarm_rate, "min_confidence": c.min_confidence,
            "building_class": c.building_class.get(adapter), "classes": list(ad.classes), "colors": list(ad.colors),
            "compression": m.compression, "blocksize_px": m.blocksize_px, "quicklook_max_px": m.quicklook_max_px,
            "boroughs": config.grid.boroughs}


def pair_key(config: PipelineConfig, adapter: str, pair: str, cur_key: str, prev_key: str | None,
             nkey: str | None, skip_reason: str | None) -> str:
    return digest({"stage": "change", "code": CODE_VERSION, "adapter": adapter, "pair": pair, "current": cur_key,
                   "previous": prev_key, "noise": nkey, "skip": skip_reason,
                   "settings": change_settings(config, adapter) if skip_reason is None else None})


def persistence_key(config: PipelineConfig, pkey: str, neighbours: dict[str, str]) -> str:
    return digest({"stage": "change-persistence", "code": CODE_VERSION, "pair": pkey,
                   "rule": config.change.persistence.model_dump(mode="json"), "neighbours": neighbours})
