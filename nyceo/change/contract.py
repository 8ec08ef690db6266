"""The change stage's contract entry (STAGE): status, key, outputs, run."""

from __future__ import annotations

from typing import Any

from nyceo.change import layout
from nyceo.config import PipelineConfig
from nyceo.contract import Stage, Status, Upstream
from nyceo.keys import digest


def _expected(config: PipelineConfig, month: str) -> dict[str, dict[str, str]] | str:
    """{adapter: {pair: key}} the configuration asks for, or the reason it cannot be known yet."""
    from nyceo.change.pairs import choose, store_info
    from nyceo.change.stage import expected_key

    out: dict[str, dict[str, str]] = {}
    for adapter in layout.adapters(config):
        cur = store_info(config, month, adapter)
        if cur is None:
            return f"no published prediction store of '{adapter}' for {month} (run infer)"
        out[adapter] = {p: expected_key(config, month, adapter, choose(config, month, adapter, p, cur))
                        for p in config.change.pairs}
    return out


def inputs_key(config: PipelineConfig, month: str) -> str | None:
    expected = _expected(config, month)
    return None if isinstance(expected, str) else digest({"stage": "change", "pairs": expected})


def status(config: PipelineConfig, month: str) -> Status:
    from nyceo.change.stage import pair_record, read_json
    from nyceo.mosaic.layout import storage_options

    expected = _expected(config, month)
    if isinstance(expected, str):
        return Status("blocked", reason=expected)
    key = digest({"stage": "change", "pairs": expected})
    detail: dict[str, Any] = {}
    done = skipped = present = 0
    for adapter, pairs in expected.items():
        for pair, want in pairs.items():
            rec = pair_record(config, month, adapter, pair) or {}
            present += bool(rec)
            ok = rec.get("key") == want
            done += ok
            skipped += ok and rec.get("state") == "skipped"
            pers = read_json(layout.out(config, layout.pair_rel(month, adapter, pair, "persistence.json")),
                             storage_options(config)) or {}
            detail[f"{adapter}/{pair}"] = {"state": rec.get("state") if ok else ("stale" if rec else "missing"),
                                           "reason": rec.get("reason", ""),
                                           "persistence_window_complete": pers.get("window_complete")}
    total = sum(len(p) for p in expected.values())
    if done == total:  # every pair made or skipped with a typed reason (in detail) for this key
        reasons = sorted({f"{n}: {d['reason']}" for n, d in detail.items() if d["state"] == "skipped"})
        return Status("current", reason="; ".join(reasons), done=done, total=total, key=key,
                      published_key=key, detail={**detail, "pairs_skipped": skipped})
    # every pair has a record but some of another key: stale; some pairs without a record: partial
    state = "missing" if present == 0 else ("stale" if present == total else "partial")
    return Status(state, done=done, total=total, key=key, detail=detail)


def outputs(config: PipelineConfig, month: str) -> dict[str, str]:
    return {f"{a}/{p}": layout.out(config, layout.pair_rel(month, a, p, "record.json"))
            for a in layout.adapters(config) for p in config.change.pairs}


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    from nyceo.change.stage import run_change

    return run_change(config, month)


STAGE = Stage(
    name="change",
    description="Month-over-month and year-over-year change layers per adapter, gated by a measured "
                "noise floor; persistence; change areas per borough with expected false-change area.",
    upstreams=(Upstream("infer", 0), Upstream("infer", -1, optional=True), Upstream("infer", -12, optional=True)),
    outputs=outputs,
    status=status,
    inputs_key=inputs_key,
    run=run,
    key_settings=("change.false_alarm_rate", "change.min_confidence", "change.building_class", "change.noise",
                  "change.persistence (persistence output only)", "infer.adapters.<a>.classes/colors",
                  "mosaic.compression/blocksize_px/quicklook_max_px", "grid.boroughs"),
    enabled=lambda config: None if config.change.enabled else "change.enabled is false",
)
