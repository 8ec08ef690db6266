"""The stage contract: every stage is declared once, here-registered, and read by everything else.

A stage is a :class:`Stage`: its name, its upstream stages (with month offsets: ``change`` reads
``infer`` of M, M-1 and M-12), its outputs, a ``status(config, month)`` and an
``inputs_key(config, month)``. The monthly flow, backfill ordering, ``nyceo status``, progress bars
and the CLI all iterate :func:`stages` — adding a stage is one new folder under ``nyceo/`` and one
line in :data:`STAGE_MODULES`.

Keys are content addresses (as DVC stage hashes or Dagster data versions): upstream keys plus the
settings that change output values, never time, paths or execution settings (batch size, threads,
block sizes, dask, run name, output location). ``nyceo.keys`` builds them; docs/ARCHITECTURE.md
lists what is and is not in each.

No Prefect here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from nyceo.config import PipelineConfig

State = Literal["current", "partial", "stale", "missing", "skipped", "blocked"]
# current: outputs exist and carry the key the configuration asks for; partial: some work units
# done (a killed or running build); stale: complete outputs of another key (kept readable until the
# rebuild is complete: ``rebuilding`` says one is under way); missing: nothing; skipped: the stage
# finished with a typed reason (no usable data, predecessor month absent); blocked: an upstream is
# not current, so the stage cannot run yet.
FINISHED: tuple[str, ...] = ("current", "skipped")

# One line per stage: "<stage name>": "<module defining STAGE>". Order is not significant (the
# registry sorts topologically), but keep pipeline order for readers.
STAGE_MODULES: dict[str, str] = {
    "grid": "nyceo.grid_stage",
    "acquire": "nyceo.acquire.contract",
    "infer": "nyceo.infer.contract",
    "mosaic": "nyceo.mosaic.contract",
    "evaluate": "nyceo.evaluate.contract",
    "change": "nyceo.change.contract",
    "zonal": "nyceo.zonal.contract",
    "report": "nyceo.report.contract",
}


@dataclass(frozen=True)
class Upstream:
    """A stage this one reads, ``month_offset`` months before (0 = the same month; ignored for
    stages that are not per month). An ``optional`` upstream that is not current makes the stage
    skip that input with a typed reason instead of blocking it (change layers' M-1 and M-12)."""

    stage: str
    month_offset: int = 0
    optional: bool = False


@dataclass
class Status:
    """Where one stage stands for one month."""

    state: State
    reason: str = ""
    done: int = 0
    total: int | None = None
    key: str | None = None  # the key the configuration asks for (None: upstream not ready)
    published_key: str | None = None  # the key of what is published now
    rebuilding: bool = False  # stale or partial, and a build of ``key`` is under way / resumable
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def describe(self) -> str:
        """'current', 'stale, rebuild in progress (3/12)', 'partial 5/12', ..."""
        text = self.state
        if self.state == "stale" and self.rebuilding:
            text += ", rebuild in progress"
        if self.total:
            text += f" {self.done}/{self.total}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "done": self.done, "total": self.total,
                "key": self.key, "published_key": self.published_key, "rebuilding": self.rebuilding,
                **({"detail": self.detail} if self.detail else {})}


def published_status(key: str, published: str | None, gone: list[str]) -> Status:
    """The status of outputs published under ``key``: current, or partial when files are ``gone``."""
    if not gone:
        return Status("current", key=key, published_key=published)
    return Status("partial", reason=f"{len(gone)} published file(s) gone (deleted by hand?), e.g. {gone[0]}; "
                  "the next run rewrites them", key=key, published_key=published, detail={"missing": gone})


StatusFn = Callable[[PipelineConfig, str], Status]
KeyFn = Callable[[PipelineConfig, str], "str | None"]
RunFn = Callable[[PipelineConfig, str], dict[str, Any]]
OutputsFn = Callable[[PipelineConfig, str], dict[str, str]]


@dataclass(frozen=True)
class Stage:
    """One stage, declared once.

    ``run(config, month)`` is the plain, Prefect-free way to bring the stage's outputs up to date
    (the CLI and the generic flow step call it; stages with parallel work units also have a
    flow step of their own in ``flows/steps``). It must be idempotent: outputs that are current are
    skipped, a rebuild happens beside the published outputs and replaces them only when complete.
    """

    name: str
    description: str
    upstreams: tuple[Upstream, ...]
    outputs: OutputsFn
    status: StatusFn
    inputs_key: KeyFn
    run: RunFn
    per_month: bool = True
    key_settings: tuple[str, ...] = ()  # config fields in the key (documentation, `nyceo stages`)
    optional: bool = False  # not in the default monthly run unless configured (e.g. no reference)
    enabled: Callable[[PipelineConfig], "str | None"] = lambda config: None  # reason to skip, or None


_REGISTRY: dict[str, Stage] | None = None


def registry() -> dict[str, Stage]:
    """Every registered stage by name, in dependency (topological) order."""
    global _REGISTRY
    if _REGISTRY is None:
        found = {name: importlib.import_module(mod).STAGE for name, mod in STAGE_MODULES.items()}
        for name, st in found.items():
            if st.name != name:
                raise RuntimeError(f"{STAGE_MODULES[name]}.STAGE is named '{st.name}', registered as '{name}'")
            unknown = [u.stage for u in st.upstreams if u.stage not in found]
            if unknown:
                raise RuntimeError(f"stage '{name}' reads unknown stage(s) {unknown}")
        _REGISTRY = {name: found[name] for name in _topological(found)}
    return _REGISTRY


def _topological(found: dict[str, Stage]) -> list[str]:
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise RuntimeError(f"stage dependency cycle through '{name}'")
        visiting.add(name)
        for up in found[name].upstreams:
            visit(up.stage)
        visiting.discard(name)
        order.append(name)

    for name in found:  # registration order breaks ties
        visit(name)
    return order


def stages() -> list[Stage]:
    return list(registry().values())


def stage_names() -> list[str]:
    return list(registry())


def get(name: str) -> Stage:
    reg = registry()
    if name not in reg:
        raise ValueError(f"unknown stage '{name}'; stages are {list(reg)}")
    return reg[name]


def shift_month(month: str, offset: int) -> str:
    """'2024-07' shifted by ``offset`` months (-1 -> '2024-06', -12 -> '2023-07')."""
    y, m = map(int, month.split("-"))
    idx = y * 12 + (m - 1) + offset
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


def upstream_refs(stage: Stage, month: str) -> list[tuple[Upstream, str]]:
    """(upstream, the month it is read for) pairs of ``stage`` running for ``month``."""
    return [(u, shift_month(month, u.month_offset) if stage.per_month and get(u.stage).per_month else month)
            for u in stage.upstreams]


def check_stage_names(names: list[str] | None) -> list[str]:
    """Requested stages in pipeline order; unknown names are a clear error. None = every stage."""
    all_names = stage_names()
    if names is None:
        return all_names
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; choose from {all_names}")
    return [n for n in all_names if n in names]


def month_status(config: PipelineConfig, month: str, names: list[str] | None = None) -> dict[str, Status]:
    """Every (or the named) stage's status for ``month``; a failing status probe is reported, not raised."""
    out: dict[str, Status] = {}
    for st in stages():
        if names is not None and st.name not in names:
            continue
        try:
            off = st.enabled(config)
            out[st.name] = Status("skipped", reason=off) if off else st.status(config, month)
        except Exception as exc:  # noqa: BLE001 - a status probe must never break a report
            out[st.name] = Status("missing", reason=f"status failed: {type(exc).__name__}: {exc}")
    return out


def lagged(names: list[str]) -> list[str]:
    """Of ``names``, the stages that read an earlier month (a non-zero upstream offset) and every
    stage downstream of one: a backfill runs them month by month, in order, after the others."""
    reg = registry()
    out: list[str] = []
    for name, st in reg.items():
        if any(u.month_offset for u in st.upstreams) or any(u.stage in out for u in st.upstreams):
            out.append(name)
    return [n for n in names if n in out]
