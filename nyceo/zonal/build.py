"""One zonal build: class-area tables, heat-island feed, NDVI, stormwater feed and exposure, in order.

Called by :func:`nyceo.zonal.stage.run` with a :class:`~nyceo.zonal.stage.Context` whose build folder
is named by the key: files already there are this key's and are not rewritten (resume).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nyceo import paths, versioned
from nyceo.io import upload_file_atomic
from nyceo.mosaic.predstore import open_pred_store
from nyceo.provenance import base_provenance
from nyceo.zonal import exposure, feeds, remote
from nyceo.zonal.coverage import RasterGrid
from nyceo.zonal.engine import class_area_table, read_prediction
from nyceo.zonal.outputs import done, write_table
from nyceo.zonal.stage import Context, adapter_sha256, adapter_tables, ident_columns

log = logging.getLogger("nyceo.zonal")

GROUP_COLS = ["impervious_km2", "impervious_share", "vegetation_km2", "vegetation_share", "mapped_km2"]


def build_all(ctx: Context, preds: dict[str, tuple[str, str]]) -> dict[str, Any]:
    files: list[str] = []
    skipped: list[str] = []
    heat_rows: list[pd.DataFrame] = []
    hazards = [exposure.load_hazard(ctx.config, spec) for spec in ctx.config.zonal.hazards]
    units = [u for u in (ctx.layer("borough"), ctx.layer("nta")) if u is not None] or _units(ctx)
    pieces = [(h, u, exposure.pieces(h, u)) for h in hazards for u in units]
    for h, u, p in pieces:
        if p.gdf.empty:
            skipped.append(f"exposure {h.name} x {u.name}: no hazard zone intersects the {u.name} polygons")
    pieces = [(h, u, p) for h, u, p in pieces if not p.gdf.empty]
    measures: dict[int, list[pd.DataFrame]] = {i: [] for i in range(len(pieces))}
    for adapter, (path, _) in preds.items():
        store = open_pred_store(path, ctx.config, adapter)
        sha = adapter_sha256(store.provenance, ctx.config, adapter)
        classes = list(store.classes)
        class_map, prob = read_prediction(store, classes, classes)  # read once per adapter
        tables, written = adapter_tables(ctx, adapter, store, sha, class_map, prob)
        files += written
        has_groups = any(c in classes for c in (*ctx.config.zonal.impervious_classes, *ctx.config.zonal.vegetation_classes))
        if has_groups:
            files += heat_grid(ctx, adapter, store, sha, class_map)
            files += stormwater(ctx, adapter, tables)
            if "nta" in tables:
                heat_rows.append(tables["nta"][[*ident_columns(ctx, adapter, sha), "zone_id", "zone_name", "category",
                                                *[c for c in GROUP_COLS if c in tables["nta"]]]])
        else:
            skipped.append(f"heat/stormwater feeds: adapter '{adapter}' has none of the impervious/vegetation classes")
        for i, (_, _, piece) in enumerate(pieces):
            measures[i].append(exposure_measures(ctx, adapter, sha, store, piece, class_map, prob))
    ndvi_nta, ndvi_files = ndvi(ctx, skipped)
    files += ndvi_files
    files += heat_table(ctx, heat_rows, ndvi_nta)
    pop = exposure.load_population(ctx.config, ctx.config.zonal.population) if ctx.config.zonal.population else None
    for i, (hazard, unit, piece) in enumerate(pieces):
        people = exposure.allocate_population(piece.gdf, pop, ctx.config.zonal.population.count_column) if pop is not None else None
        frame = exposure.exposure_frame(piece, hazard.name, unit.name, pd.concat(measures[i], ignore_index=True), people)
        stem = ctx.path("exposure", f"{hazard.name}_{unit.name}")
        files += write_table(frame, stem, {"month": ctx.month, "key": ctx.key, "hazard": hazard.source})
    repaired = {h.name: h.repaired_ids for h in hazards if h.repaired_ids}
    return {"files": files, "skipped": skipped, "repaired": repaired}


def _units(ctx: Context):
    from nyceo.zonal.layers import builtin_layers

    return builtin_layers(ctx.config.model_copy(update={"zonal": ctx.config.zonal.model_copy(update={"boroughs": True, "ntas": True})}))


def exposure_measures(ctx: Context, adapter: str, sha: str, store, piece, class_map, prob) -> pd.DataFrame:
    """Developed / building area inside each exposure piece for one adapter."""
    classes = list(store.classes)
    grid = RasterGrid(store.transform, store.height_px, store.width_px, ctx.config.grid.crs)
    bclass = ctx.config.zonal.building_class
    prob = {bclass: prob[bclass]} if bclass in prob else None
    table = class_area_table(ctx.compact(grid, piece), grid, class_map, classes, prob, ctx.groups())
    out = pd.DataFrame({"_piece": np.arange(len(table)), "adapter": adapter, "adapter_sha256": sha,
                        "mapped_km2": table["mapped_km2"]})
    out["developed_km2"] = table["impervious_km2"] if "impervious_km2" in table else np.nan
    out["building_km2"] = table[f"{bclass}_km2"] if f"{bclass}_km2" in table else np.nan
    out["building_p_km2"] = table[f"{bclass}_p_km2"] if f"{bclass}_p_km2" in table else np.nan
    return out


def _tags(ctx: Context, **extra: Any) -> dict[str, str]:
    prov = base_provenance(ctx.config, "zonal", month=ctx.month, inputs_key=ctx.key, **extra)
    return {"NYCEO_INPUT_KEY": ctx.key, "NYCEO_PROVENANCE": json.dumps(prov, sort_keys=True, default=str)}


def _write_cog(ctx: Context, rel: tuple[str, ...], bands: dict[str, np.ndarray], transform, tags: dict[str, str]) -> list[str]:
    dest = ctx.path(*rel)
    if remote.exists(dest):
        return [dest]
    with tempfile.TemporaryDirectory(prefix="nyceo-zonal-") as work:
        local = Path(work) / rel[-1]
        feeds.write_float_cog(bands, transform, ctx.config.grid.crs, local, tags)
        upload_file_atomic(local, dest)
    return [dest]


def feed_geometry(ctx: Context, grid: RasterGrid):
    g = ctx.config.grid
    return feeds.feed_geometry(grid, (g.origin_x_m, g.origin_y_m), ctx.config.zonal.feed_cell_m)


def heat_grid(ctx: Context, adapter: str, store, sha: str, class_map) -> list[str]:
    """``heat/<adapter>_100m.tif``: impervious and vegetation share per feed cell, and the mapped fraction."""
    grid = RasterGrid(store.transform, store.height_px, store.width_px, ctx.config.grid.crs)
    factor, offset, transform = feed_geometry(ctx, grid)
    classes = list(store.classes)
    z = ctx.config.zonal
    imp, valid = feeds.share_grid(class_map, classes, list(z.impervious_classes), factor, offset)
    veg, _ = feeds.share_grid(class_map, classes, list(z.vegetation_classes), factor, offset)
    cell = f"{z.feed_cell_m:g}m"
    return _write_cog(ctx, ("heat", f"{adapter}_{cell}.tif"),
                      {"impervious_share": imp, "vegetation_share": veg, "valid_fraction": valid}, transform,
                      _tags(ctx, adapter=adapter, adapter_sha256=sha, impervious=z.impervious_classes,
                            vegetation=z.vegetation_classes))


def ndvi(ctx: Context, skipped: list[str]) -> tuple[pd.DataFrame | None, list[str]]:
    """Median NDVI of the month on the feed grid and per NTA (model-independent)."""
    if not ctx.config.zonal.ndvi:
        return None, []
    import zarr

    from nyceo.infer.store import StackStore, StackStoreError
    from nyceo.grid import Lattice

    final = paths.stack_store(ctx.config, ctx.month)
    path = versioned.resolve(final) or final  # through the pointer: object stores have no symlink
    try:
        stack = StackStore(path, Lattice.from_config(ctx.config.grid))
    except StackStoreError as exc:
        skipped.append(f"NDVI: {exc}")
        return None, []
    bands = [str(b) for b in np.asarray(zarr.open_group(path, mode="r")["band"][:]).tolist()] \
        if "band" in stack.group else list(ctx.config.acquire.s2_bands)
    area = stack.area
    grid = RasterGrid(area.transform, area.height_px, area.width_px, ctx.config.grid.crs)
    values = feeds.stack_ndvi(path, bands, area.lattice.chip_size_px)
    factor, offset, transform = feed_geometry(ctx, grid)
    mean, frac = feeds.mean_grid(values, factor, offset)
    files = _write_cog(ctx, ("heat", f"ndvi_{ctx.config.zonal.feed_cell_m:g}m.tif"),
                       {"ndvi": mean, "clear_fraction": frac}, transform, _tags(ctx, source="stack s2 B04/B08, s2_valid == 1"))
    nta = ctx.layer("nta")
    if nta is None:
        return None, files
    table = pd.DataFrame({"zone_id": nta.gdf["zone_id"].to_numpy(), "ndvi_median_mean": feeds.zone_mean(ctx.compact(grid, nta), values)})
    stem = ctx.path("heat", "ndvi_nta")
    frame = pd.DataFrame({"month": ctx.month, "config_hash": ctx.config.config_hash(), "key": ctx.key,
                          "zone_name": nta.gdf["zone_name"].to_numpy(), "borough": nta.gdf["category"].to_numpy()}).join(table)
    files += write_table(frame, stem, {"month": ctx.month, "key": ctx.key})
    return table, files


def heat_table(ctx: Context, rows: list[pd.DataFrame], ndvi_nta: pd.DataFrame | None) -> list[str]:
    """``heat/nta``: per NTA x adapter, impervious and vegetation share with the month's NDVI beside them."""
    if not rows:
        return []
    frame = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True).rename(columns={"category": "borough"})
    if ndvi_nta is not None:
        frame = frame.merge(ndvi_nta, on="zone_id", how="left")
    stem = ctx.path("heat", "nta")
    return write_table(frame, stem, {"month": ctx.month, "key": ctx.key}) if not done(stem) else [f"{stem}.parquet", f"{stem}.csv"]


def stormwater(ctx: Context, adapter: str, tables: dict[str, pd.DataFrame]) -> list[str]:
    """Impervious area and share per NTA and user layer, and per layer x category."""
    files, by_cat = [], []
    for name, frame in tables.items():
        if name == "borough" or "impervious_km2" not in frame:
            continue
        cols = [c for c in frame.columns if c in ("month", "adapter", "adapter_sha256", "config_hash", "key", "layer",
                                                  "zone_id", "zone_name", "category", "zone_km2", "mapped_km2",
                                                  "impervious_km2", "impervious_share", "geometry")]
        sub = frame[cols]
        files += write_table(sub, ctx.path("stormwater", f"{adapter}_{name}"), {"month": ctx.month, "key": ctx.key})
        if sub["category"].notna().any():
            g = pd.DataFrame(sub.drop(columns="geometry")).groupby("category", dropna=False)
            agg = g.agg(zones=("zone_id", "count"), zone_km2=("zone_km2", "sum"), mapped_km2=("mapped_km2", "sum"),
                        impervious_km2=("impervious_km2", "sum")).reset_index()
            agg["impervious_share"] = agg["impervious_km2"] / agg["mapped_km2"]
            by_cat.append(agg.assign(layer=name, adapter=adapter, month=ctx.month, key=ctx.key))
    if by_cat:
        out = pd.concat(by_cat, ignore_index=True)
        dest = ctx.path("stormwater", f"{adapter}_by_category.csv")
        from nyceo.io import write_bytes_atomic

        write_bytes_atomic(dest, out.to_csv(index=False, float_format="%.10g").encode())
        files.append(dest)
    return files
