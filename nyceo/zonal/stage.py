"""The zonal stage: per month, every adapter's class areas per borough / NTA / user layer, the heat-island
and stormwater feeds, and the exposure overlays — from cached coverage fractions.

Key: digest of the month's published prediction keys, the polygon files' sha256, the zonal settings
(without the cache folder), the adapters' class lists, the evaluation files and change outputs read
(they add interval and change columns), and the code version. Outputs are built in ``zonal@<key16>``
and published (pointer + symlink) when complete; a re-run with the same key skips finished tables.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nyceo import versioned
from nyceo.config import PipelineConfig
from nyceo.contract import Status, published_status
from nyceo.infer.contract import published_pred
from nyceo.io import join, missing_files, write_json_atomic
from nyceo.keys import CODE_VERSIONS, digest
from nyceo.provenance import base_provenance
from nyceo.zonal import accuracy, change
from nyceo.zonal.coverage import Compact, RasterGrid, load_or_compute
from nyceo.zonal.engine import Groups, class_area_table
from nyceo.zonal.layers import ZoneLayer, all_layers, layer_file_hashes
from nyceo.zonal.outputs import MANIFEST, cache_dir, done, read_manifest, write_table, zonal_dir
from nyceo.zonal.remote import exists, is_file, relative, remove_other_versions, sha256_of

log = logging.getLogger("nyceo.zonal")


def zonal_adapters(config: PipelineConfig) -> list[str]:
    """The adapters summarised: zonal.adapters, or every configured adapter; unknown names are an error."""
    names = list(config.zonal.adapters or config.infer.adapters)
    unknown = [a for a in names if a not in config.infer.adapters]
    if unknown:
        raise ValueError(f"zonal.adapters names {unknown}, which are not in infer.adapters "
                         f"({list(config.infer.adapters)}); fix the zonal section")
    return names


def published_preds(config: PipelineConfig, month: str) -> dict[str, tuple[str, str]]:
    """{adapter: (store path, pred key)} of the configured adapters published for ``month``."""
    out = {}
    for adapter in zonal_adapters(config):
        found = published_pred(config, month, adapter)
        if found:
            out[adapter] = found
    return out


def stale_preds(config: PipelineConfig, month: str, preds: dict[str, tuple[str, str]]) -> list[str]:
    """Adapters whose published store is not the one the configuration asks for (infer must rebuild
    first). When the configuration cannot name one (no stack of this configuration yet, unpinned
    remote adapter files), the published store is used."""
    from nyceo.infer.contract import expected_pred_key

    stale = []
    for adapter, (_, key) in preds.items():
        try:
            expected = expected_pred_key(config, month, adapter)
        except Exception:  # noqa: BLE001 - no grid / stack layout yet: nothing to compare with
            expected = None
        if expected is not None and expected != key:
            stale.append(adapter)
    return stale


def zonal_settings(config: PipelineConfig) -> dict[str, Any]:
    """Settings that change zonal values (coverage_cache is a location, not content)."""
    z = config.zonal.model_dump(mode="json", exclude={"coverage_cache"})
    z["classes"] = {a: list(config.infer.adapters[a].classes) for a in zonal_adapters(config)}
    z["grid"] = {"crs": config.grid.crs, "origin": [config.grid.origin_x_m, config.grid.origin_y_m],
                 "resolution_m": config.grid.resolution_m}
    return z


def inputs_key(config: PipelineConfig, month: str) -> str | None:
    """The key of the zonal outputs the configuration asks for; None while no prediction is published."""
    preds = published_preds(config, month)
    if not preds:
        return None
    evals = {a: sha256_of(p) for a in preds if is_file(p := accuracy.metrics_path(config, month, a))}
    return digest({"stage": "zonal", "code": CODE_VERSIONS.get("zonal", "1"), "preds": {a: k for a, (_, k) in preds.items()},
                   "polygons": layer_file_hashes(config), "settings": zonal_settings(config), "eval": evals,
                   "change": {a: change.change_fingerprint(config, month, a) for a in preds}})


def status(config: PipelineConfig, month: str) -> Status:
    final = zonal_dir(config, month)
    published = versioned.published_key(final)
    stale = stale_preds(config, month, published_preds(config, month))
    if stale:
        return Status("blocked", reason=f"infer is stale for {stale} (rebuild it first)", published_key=published)
    key = inputs_key(config, month)
    if key is None:
        return Status("blocked", reason="no prediction store published for this month (run infer)",
                      published_key=published)
    if published == key:
        return published_status(key, published, published_files_missing(config, month))
    building = exists(versioned.version_path(final, key))
    if published:
        return Status("stale", reason="inputs changed since the published tables", key=key,
                      published_key=published, rebuilding=building)
    return Status("partial" if building else "missing", key=key)


def published_files_missing(config: PipelineConfig, month: str) -> list[str]:
    """Files of the published tables (zonal.json and every file it lists) that are not there."""
    base = versioned.resolve(zonal_dir(config, month))
    manifest = read_manifest(config, month)
    if base is None or manifest is None:
        return [join(base or zonal_dir(config, month), MANIFEST)]
    return missing_files([join(base, *f.split("/")) for f in manifest.get("files", [])])


@dataclass
class Context:
    """Everything one zonal build shares: config, month, key, build folder, layers and their coverage."""

    config: PipelineConfig
    month: str
    key: str
    build: str
    layers: list[ZoneLayer]
    coverage: dict[tuple[str, tuple], Compact] = field(default_factory=dict)
    cache_hits: dict[str, bool] = field(default_factory=dict)

    def compact(self, grid: RasterGrid, layer: ZoneLayer) -> Compact:
        ident = (layer.name, tuple(json.dumps(grid.identity(), sort_keys=True)))
        if ident not in self.coverage:
            compact, hit = load_or_compute(grid, layer, cache_dir(self.config))
            self.cache_hits[layer.name] = hit
            self.coverage[ident] = compact
        return self.coverage[ident]

    def layer(self, name: str) -> ZoneLayer | None:
        return next((layer for layer in self.layers if layer.name == name), None)

    def groups(self) -> Groups:
        z = self.config.zonal
        return Groups(tuple(z.impervious_classes), tuple(z.vegetation_classes))

    def path(self, *parts: str) -> str:
        return join(self.build, *parts)


def adapter_sha256(provenance: dict[str, Any], config: PipelineConfig, adapter: str) -> str:
    """The adapter's weight file sha256 (adapter_model.safetensors), from the store's provenance or the pins."""
    model = provenance.get("model") if isinstance(provenance.get("model"), dict) else {}
    files = model.get("sha256") or config.infer.adapters[adapter].sha256 or {}
    return files.get("adapter_model.safetensors") or (digest(dict(sorted(files.items()))) if files else "")


def ident_columns(ctx: Context, adapter: str, sha: str) -> dict[str, Any]:
    return {"month": ctx.month, "adapter": adapter, "adapter_sha256": sha, "config_hash": ctx.config.config_hash(),
            "key": ctx.key}


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    """Bring the month's zonal outputs up to date (idempotent, resumable); return a summary."""
    from nyceo.zonal import build

    st = status(config, month)
    if st.state == "current":
        return {"status": "current", "key": st.key, "dir": zonal_dir(config, month)}
    if st.state == "blocked":
        return {"status": "skipped", "reason": st.reason}
    final = zonal_dir(config, month)
    ctx = Context(config, month, st.key, versioned.version_path(final, st.key), all_layers(config))
    files = build.build_all(ctx, published_preds(config, month))
    repaired = {layer.name: layer.repaired_ids for layer in ctx.layers if layer.repaired_ids}
    manifest = {"key": st.key, "provenance": base_provenance(config, "zonal", month=month, inputs_key=st.key),
                "files": sorted(relative(f, ctx.build) for f in files["files"]),
                "repaired_feature_ids": {**repaired, **files["repaired"]}, "skipped": files["skipped"]}
    write_json_atomic(ctx.path(MANIFEST), manifest)
    versioned.publish(final, st.key, companions=())
    remove_other_versions(final, st.key)
    return {"status": "done", "key": st.key, "dir": final, "coverage_cache_hits": ctx.cache_hits,
            **{k: manifest[k] for k in ("files", "repaired_feature_ids", "skipped")}}


def outputs(config: PipelineConfig, month: str) -> dict[str, str]:
    d = zonal_dir(config, month)
    return {"manifest": join(d, MANIFEST), "dir": d}


def zone_frame(ctx: Context, layer: ZoneLayer, table: pd.DataFrame, adapter: str, sha: str):
    """Identity + zone columns + ``table`` values, with the zone geometry (GeoDataFrame)."""
    import geopandas as gpd

    ident = pd.DataFrame([ident_columns(ctx, adapter, sha)] * len(layer.gdf))
    zones = pd.DataFrame({"layer": layer.name, "zone_id": layer.gdf["zone_id"].to_numpy(),
                          "zone_name": layer.gdf["zone_name"].to_numpy(), "category": layer.gdf["category"].to_numpy()})
    frame = pd.concat([ident, zones, table.reset_index(drop=True)], axis=1)
    return gpd.GeoDataFrame(frame, geometry=layer.gdf.geometry.values, crs=layer.gdf.crs)


def adapter_tables(ctx: Context, adapter: str, store, sha: str, class_map, prob) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Class-area tables of one adapter for every layer (written unless already in the build)."""
    classes = list(store.classes)
    grid = RasterGrid(store.transform, store.height_px, store.width_px, ctx.config.grid.crs)
    em = accuracy.read_error_matrix(ctx.config, ctx.month, adapter)
    tables, files = {}, []
    for layer in ctx.layers:
        compact = ctx.compact(grid, layer)
        table = class_area_table(compact, grid, class_map, classes, prob, ctx.groups(), em, ctx.config.zonal.ci_level)
        table = pd.concat([table, change.change_areas(ctx.config, ctx.month, adapter, grid, compact)], axis=1)
        frame = zone_frame(ctx, layer, table, adapter, sha)
        tables[layer.name] = frame
        stem = ctx.path(adapter, layer.name)
        if not done(stem):
            files += write_table(frame, stem, {**ident_columns(ctx, adapter, sha), "layer": layer.name,
                                               "error_matrix": em.source if em else None})
        else:
            files += [f"{stem}.parquet", f"{stem}.csv"]
    return tables, files


__all__ = ["Context", "run", "status", "inputs_key", "outputs"]
