"""What the run report shows, gathered from the month's outputs (every input optional but the zonal tables).

Pictures first — city map per adapter (mosaic quicklook), change maps (``<month>/change/**.png``),
class areas per borough (bar charts), the 100 m heat-island grids, the evaluation's figures
(``<month>/eval/<adapter>/*.png``), time series per borough when earlier months' zonal tables exist —
then tables. Missing inputs are listed in ``notes`` with the command that makes them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nyceo import paths
from nyceo.config import PipelineConfig
from nyceo.contract import shift_month
from nyceo.mosaic import layout
from nyceo.report import charts
from nyceo.io import join
from nyceo.zonal import remote
from nyceo.zonal.outputs import published_file, read_table, zonal_dir
from nyceo.zonal.stage import zonal_adapters


@dataclass
class Figure:
    title: str
    src: str  # relative to the report folder (or a data URI once embedded)
    caption: str = ""


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    total_rows: int = 0


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Content:
    sections: list[Section]
    tables: list[Table]
    notes: list[str]
    inputs: dict[str, str]  # input file (relative to the output root when under it) -> its role
    root: str | None = None  # the output root (a local path or a URL)

    def add_input(self, path: str, role: str) -> None:
        under = self.root is not None and str(path).startswith(self.root.rstrip("/") + "/")
        self.inputs[remote.relative(str(path), self.root) if under else str(path)] = role


def _fmt(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else (f"{v:.3f}" if abs(v) < 1000 else f"{v:,.0f}")
    return v


def table_of(title: str, frame: pd.DataFrame, cols: list[str], max_rows: int, note: str = "") -> Table:
    cols = [c for c in cols if c in frame.columns]
    rows = [[_fmt(v) for v in r] for r in frame[cols].head(max_rows).itertuples(index=False)]
    return Table(title, cols, rows, note, len(frame))


def copy_image(src: str, out_dir: Path, name: str) -> str:
    """Copy the picture at ``src`` (local path or URL) into the local staging folder's img/."""
    dest = out_dir / "img" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(remote.read_bytes(src))
    return f"img/{name}"


def city_maps(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("City maps")
    for adapter in zonal_adapters(config):
        ql = layout.out_path(config, layout.quicklook_rel(month, adapter, "nyc"))
        if remote.is_file(ql):
            sec.figures.append(Figure(f"{adapter} — city", copy_image(ql, out, f"map_{adapter}.png"), _name(ql)))
            c.add_input(ql, "quicklook")
        else:
            c.notes.append(f"no city quicklook for {adapter} ({ql}); run `nyceo mosaic --month {month}`")
    return sec


def _name(url: str) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def pngs_under(root: str) -> list[str]:
    return remote.find(root, (".png",))


def change_maps(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("Change maps")
    root = join(paths.month_dir(config, month), "change")
    found = pngs_under(root)
    city = [p for p in found if _name(p).startswith("nyc")]  # the city-wide maps when there are per-area ones
    for p in city or found:
        parts = remote.relative(p, root).split("/")
        title = " / ".join([*parts[:-1], parts[-1].removesuffix(".png")])
        sec.figures.append(Figure(title, copy_image(p, out, "change_" + "_".join(parts))))
        c.add_input(p, "change")
    if not sec.figures:
        c.notes.append("no change maps for this month (the change stage has not run, or had no earlier month)")
    return sec


def eval_figures(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("Evaluation")
    for adapter in zonal_adapters(config):
        root = join(paths.month_dir(config, month), "eval", adapter)
        files = remote.find(root, (".png", ".csv", ".json"))
        for p in (f for f in files if f.endswith(".png")):
            stem = _name(p).removesuffix(".png")
            sec.figures.append(Figure(f"{adapter}: {stem.replace('_', ' ')}", copy_image(p, out, f"eval_{adapter}_{_name(p)}")))
            c.add_input(p, "eval")
        for probes in (f for f in files if _name(f) == "probes.csv"):
            frame = pd.read_csv(io.BytesIO(remote.read_bytes(probes)))
            rel = remote.relative(probes, root)
            where = "" if "/" not in rel else f" ({rel.rsplit('/', 2)[-2]})"
            c.tables.append(table_of(f"Sniff probes — {adapter}{where}", frame, list(frame.columns), 100))
            c.add_input(probes, "eval")
        for metrics in (f for f in files if _name(f) == "metrics.json"):
            c.add_input(metrics, "eval")
    if not sec.figures:
        c.notes.append(f"no evaluation figures (run `nyceo evaluate --month {month}` with a reference configured)")
    return sec


def borough_charts(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("Class areas per borough")
    for adapter in zonal_adapters(config):
        t = read_table(config, month, f"{adapter}/borough.csv")
        if t is None:
            continue
        ad = config.infer.adapters[adapter]
        dest = charts.class_area_bars(t[t["zone_km2"] > 0], list(ad.classes), list(ad.colors), f"{adapter}, {month}",
                                      out / "img" / f"areas_{adapter}.png")
        sec.figures.append(Figure(f"{adapter} — class areas per borough (km²)", f"img/{dest.name}"))
        share_cols = [f"{k}_share" for k in ad.classes] + [f"{k}_share_lo" for k in ad.classes if f"{k}_share_lo" in t]
        c.tables.append(table_of(f"{adapter}: class shares per borough", t, ["zone_name", "zone_km2", "mapped_km2",
                                 *share_cols], config.report.max_table_rows))
    return sec


def heat_maps(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("Heat-island feed (100 m)")
    heat = published_file(config, month, "heat")
    cell = f"{config.zonal.feed_cell_m:g}m"
    for p in remote.find(heat, (f"_{cell}.tif",)) if heat else []:
        with remote.open_raster(p) as ds:
            band = ds.read(1)
        stem = _name(p).removesuffix(".tif")
        is_ndvi = stem.startswith("ndvi")
        name = "median NDVI (clear S2 observations)" if is_ndvi else f"{stem.removesuffix('_' + cell)}: impervious share"
        dest = charts.grid_map(band, name, "RdYlGn" if is_ndvi else "magma_r", -0.2 if is_ndvi else 0, 0.9 if is_ndvi else 1,
                               "NDVI" if is_ndvi else "share", out / "img" / f"heat_{stem}.png")
        sec.figures.append(Figure(name, f"img/{dest.name}", _name(p)))
    return sec


def history(config: PipelineConfig, month: str, out: Path, c: Content) -> Section:
    sec = Section("Developed and vegetation share over time")
    for adapter in zonal_adapters(config):
        frames = []
        for back in range(config.report.history_months, -1, -1):
            m = shift_month(month, -back)
            t = read_table(config, m, f"{adapter}/borough.csv")
            if t is not None and "impervious_share" in t:
                frames.append(t.assign(month=m))
                c.add_input(join(zonal_dir(config, m), adapter, "borough.csv"), "zonal history")
        if len(frames) >= 2:
            dest = charts.share_series(pd.concat(frames), adapter, out / "img" / f"series_{adapter}.png")
            sec.figures.append(Figure(f"{adapter} — share per borough by month", f"img/{dest.name}"))
    if not sec.figures:
        c.notes.append("time series need zonal tables of at least two months (run `nyceo zonal` for earlier months)")
    return sec


def feed_tables(config: PipelineConfig, month: str, c: Content) -> None:
    n = config.report.max_table_rows
    for spec in config.zonal.hazards:
        t = read_table(config, month, f"exposure/{spec.name}_borough.csv")
        if t is not None:
            c.tables.append(table_of(f"Exposure — {spec.name} x borough", t, ["hazard_zone", "unit_name", "adapter", "land_km2",
                                     "developed_km2", "building_km2", "building_p_km2", "population"], n, spec.label))
    for adapter in zonal_adapters(config):
        t = read_table(config, month, f"stormwater/{adapter}_by_category.csv")
        if t is not None:
            c.tables.append(table_of(f"Stormwater — {adapter}: impervious area by layer and category", t,
                                     ["layer", "category", "zones", "mapped_km2", "impervious_km2", "impervious_share"], n))
    t = read_table(config, month, "heat/nta.csv")
    if t is not None:
        t = t.sort_values("vegetation_share") if "vegetation_share" in t else t
        c.tables.append(table_of("Heat — NTAs by vegetation share (lowest first)", t, ["adapter", "zone_id", "zone_name", "borough",
                                 "impervious_share", "vegetation_share", "ndvi_median_mean"], n))


def gather(config: PipelineConfig, month: str, out: Path) -> Content:
    c = Content([], [], [], {}, str(config.run.output_root))
    builders = (city_maps, change_maps, borough_charts, heat_maps, eval_figures, history)
    c.sections = [s for s in (b(config, month, out, c) for b in builders) if s.figures]
    feed_tables(config, month, c)
    return c
