"""Content-addressed keys: upstream keys + the settings that change output values, nothing else.

Every key is ``digest(material)``: the sha256 of canonical JSON. What goes into each stage's
material is decided here, in one place, and listed in docs/ARCHITECTURE.md ("Keys"). Execution
settings — batch sizes, threads, prefetch, block sizes, device, dask, run name, output location,
cache folders — never enter a key: changing them re-uses every finished output untouched.

``CODE_VERSIONS`` plays the role of Dagster's code versions: bump a stage's entry when a code change
alters its output values, and exactly that stage and those downstream of it rebuild.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from nyceo.config import AdapterConfig, PipelineConfig

CODE_VERSIONS: dict[str, str] = {
    "grid": "1",
    "acquire": "1",
    "infer": "3",  # 2: TiM tokens seeded per window (not per batch); 3: float32 matmuls really float32
    "mosaic": "1",
    "zonal": "2",  # 2: exact float64 sums from the interior/edge coverage (p-weighted areas and NDVI means were float32-accumulated)
    "report": "2",  # 2: trained demo adapters are not called untrained
}


def digest(material: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``material``."""
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def short(key: str | None, n: int = 16) -> str:
    return (key or "none")[:n]


# ---- grid ---------------------------------------------------------------------------------------
def grid_settings(config: PipelineConfig) -> dict[str, Any]:
    """The lattice and the chip selection (block_size_chips is execution: outputs are block-independent)."""
    return config.grid.model_dump(mode="json", exclude={"block_size_chips"})


def grid_key(config: PipelineConfig) -> str:
    return digest({"stage": "grid", "code": CODE_VERSIONS["grid"], "grid": grid_settings(config)})


# ---- acquire ------------------------------------------------------------------------------------
def catalog_identity(config: PipelineConfig) -> dict[str, Any]:
    """What names the scenes a catalog serves — never a local path (moving a folder changes nothing).

    stac_api: its URL and collections. static: its collections (the chosen scene IDs enter the
    stack key anyway). embedded: the generator's seed, extent and configured quirks.
    """
    c = config.catalog
    ident: dict[str, Any] = {"kind": c.kind, "collections": [c.s2_collection, c.s1_collection, c.dem_collection]}
    if c.kind == "stac_api":
        ident["url"] = c.url
    if c.kind == "embedded":
        from catalogs.embedded import GENERATOR_VERSION

        ident.update(seed=c.embedded_seed, bbox_lonlat=c.embedded_bbox_lonlat, generator=GENERATOR_VERSION,
                     all_cloud_months=sorted(c.embedded_all_cloud_months),
                     sparse_radar_months=sorted(c.embedded_sparse_radar_months))
    return ident


def acquire_settings(config: PipelineConfig) -> dict[str, Any]:
    """Selection, harmonization and band settings (read_threads is execution)."""
    return config.acquire.model_dump(mode="json", exclude={"read_threads"})


def stack_fingerprint(config: PipelineConfig, month: str, area: dict[str, int]) -> dict[str, Any]:
    """Everything that decides a month's stack before the catalog is searched."""
    return {"stage": "acquire", "code": CODE_VERSIONS["acquire"], "month": month, "grid": grid_settings(config),
            "catalog": catalog_identity(config), "acquire": acquire_settings(config), "area": area}


def stack_key(fingerprint: dict[str, Any], scene_ids: list[str]) -> str:
    """The stack's content key: its fingerprint + the scenes the search offered."""
    return digest({"fingerprint": fingerprint, "scenes": sorted(scene_ids)})


# ---- infer --------------------------------------------------------------------------------------
def adapter_identity(config: PipelineConfig, adapter: str, sha256: dict[str, str] | None = None) -> dict[str, Any]:
    """An adapter's files (by sha256, not by path) and the settings that shape its outputs."""
    ad: AdapterConfig = config.infer.adapters[adapter]
    ident = ad.model_dump(mode="json", exclude={"source", "sha256", "demo_seed", "colors", "operating_points"})
    ident["sha256"] = dict(sorted((sha256 if sha256 is not None else ad.sha256).items()))
    return ident


def infer_settings(config: PipelineConfig, adapter: str) -> dict[str, Any]:
    """Infer settings that change prediction values for ``adapter``.

    In: overlap, blend taper/floor, TTA, nodata policy, fill fallback, autocast dtype (amp_dtype,
    cpu_amp), SDPA, the base weights (sha256 pin, or the random-base seed), TiM sampling (TiM only).
    Out: batch_size, cpu_threads, prefetch_blocks, block_size_chips, heads_resident, device,
    hf_cache_dir, offline, require_sha256, deployment_pickup_timeout_s.
    """
    inf = config.infer
    out: dict[str, Any] = {
        "overlap_fraction": inf.overlap_fraction, "blend_taper": inf.blend_taper, "blend_floor": inf.blend_floor,
        "tta_flips": inf.tta_flips, "nodata_policy": inf.nodata_policy, "fill_fallback": inf.fill_fallback,
        "amp_dtype": inf.amp_dtype, "cpu_amp": inf.cpu_amp, "sdpa": inf.sdpa, "timesteps": config.acquire.timesteps,
        "base": {"sha256": inf.base_sha256, "weights": inf.base_weights if not inf.base_sha256 else None,
                 "random_seed": inf.random_base_seed if inf.base_weights == "none" else None},
    }
    ad = config.infer.adapters.get(adapter)
    if ad is not None and ad.backbone.endswith("_tim"):
        out["tim"] = {"seed": inf.tim_seed, "temperature": inf.tim_temperature, "top_p": inf.tim_top_p}
    return out


def pred_key(stack_content_key: str, config: PipelineConfig, adapter: str,
             sha256: dict[str, str] | None = None) -> str:
    return digest({"stage": "infer", "code": CODE_VERSIONS["infer"], "stack": stack_content_key,
                   "adapter": adapter_identity(config, adapter, sha256), "infer": infer_settings(config, adapter)})


def runner_pred_key(stack_content_key: str, config: PipelineConfig, adapter: str, runner_provenance: dict[str, Any]) -> str:
    """Pred key for a predictor that is not a configured adapter (a stand-in model in tests and
    benchmarks): its own provenance names it."""
    return digest({"stage": "infer", "code": CODE_VERSIONS["infer"], "stack": stack_content_key,
                   "runner": runner_provenance, "infer": infer_settings(config, adapter)})


# ---- mosaic -------------------------------------------------------------------------------------
def mosaic_settings(config: PipelineConfig, adapter: str) -> dict[str, Any]:
    """COG and quicklook settings (output_root / storage_options are location, not content)."""
    m = config.mosaic
    ad = config.infer.adapters[adapter]
    return {"compression": m.compression, "blocksize_px": m.blocksize_px, "quicklook_max_px": m.quicklook_max_px,
            "thumbnail_max_px": m.thumbnail_max_px, "probability_class": m.probability_classes.get(adapter),
            "classes": list(ad.classes), "colors": list(ad.colors), "boroughs": config.grid.boroughs}


def mosaic_key(pred_content_key: str, config: PipelineConfig, adapter: str, area: str) -> str:
    return digest({"stage": "mosaic", "code": CODE_VERSIONS["mosaic"], "pred": pred_content_key,
                   "mosaic": mosaic_settings(config, adapter), "area": area})
