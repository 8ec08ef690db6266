"""One typed, strict configuration for the whole pipeline.

Every section is a pydantic model with ``extra="forbid"``: an unknown or misspelt key is an
error that names the key and the file it came from. Class lists, band orders, normalization
statistics and thresholds live here (and in ``configs/*.yaml``), never in code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

S2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)


class ConfigError(ValueError):
    """A configuration file could not be read or does not validate."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GridConfig(_Strict):
    """The fixed global chip lattice. Changing any lattice field changes every chip ID."""

    crs: str = Field("EPSG:32618", description="CRS of the lattice (UTM 18N for New York City).")
    resolution_m: float = Field(10.0, gt=0, description="Pixel size in metres (Sentinel-2 10 m grid).")
    chip_size_px: int = Field(224, gt=0, description="Chip edge in pixels (TerraMind input size).")
    origin_x_m: float = Field(
        0.0, description="Lattice origin easting (left edge of column 0), a multiple of the chip size."
    )
    origin_y_m: float = Field(
        5_017_600.0,
        description="Lattice origin northing (top edge of row 0; rows grow southward), a multiple "
        "of the chip size (default 2240 x 2240 m, north of the whole area of interest).",
    )
    boroughs: list[str] = Field(
        default_factory=lambda: ["Manhattan", "Bronx", "Brooklyn", "Queens", "Staten Island"],
        description="Boroughs to grid, by name (BoroName) or code ('1'..'5').",
    )
    min_land_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Drop chips whose land fraction (share of the chip inside the selected "
        "boroughs) is below this. 0 keeps every chip that intersects a borough.",
    )
    block_size_chips: int = Field(
        8, gt=0, description="Processing block edge in chips (acquire/infer work units)."
    )

    @property
    def chip_size_m(self) -> float:
        return self.chip_size_px * self.resolution_m

    @model_validator(mode="after")
    def _origin_on_lattice(self) -> "GridConfig":
        for name in ("origin_x_m", "origin_y_m"):
            value = getattr(self, name)
            if abs(value / self.chip_size_m - round(value / self.chip_size_m)) > 1e-9:
                raise ValueError(
                    f"grid.{name}={value} is not a multiple of the chip size "
                    f"({self.chip_size_m} m); chip IDs would not be stable. Use a multiple."
                )
        return self


class CatalogConfig(_Strict):
    """Where scenes come from."""

    kind: Literal["stac_api", "static", "embedded"] = Field(
        "stac_api", description="stac_api (Planetary Computer or any STAC API), static (catalog.json "
        "on disk), embedded (the seeded synthetic New York, offline)."
    )
    url: str = Field(
        "https://planetarycomputer.microsoft.com/api/stac/v1",
        description="STAC API root (kind=stac_api) or path to a static catalog.json (kind=static).",
    )
    signing: Literal["planetary_computer", "none"] = Field(
        "planetary_computer", description="How asset hrefs are signed right before they are read."
    )
    s2_collection: str = Field("sentinel-2-l2a", description="Sentinel-2 L2A collection id.")
    s1_collection: str = Field("sentinel-1-rtc", description="Sentinel-1 RTC collection id.")
    dem_collection: str = Field("cop-dem-glo-30", description="Copernicus DEM collection id.")
    embedded_root: str = Field(
        "outputs/embedded", description="Where the embedded city writes its COGs and catalog."
    )
    embedded_seed: int = Field(20240701, description="Seed of the embedded synthetic city.")
    embedded_bbox_lonlat: tuple[float, float, float, float] | None = Field(
        None, description="Generate the embedded city only over this (minx, miny, maxx, maxy) "
        "lon/lat box (fast tests); None = the whole city."
    )
    embedded_all_cloud_months: list[str] = Field(
        default_factory=list, description="YYYY-MM months whose embedded Sentinel-2 scenes are all cloud."
    )
    embedded_sparse_radar_months: list[str] = Field(
        default_factory=list, description="YYYY-MM months with a single embedded Sentinel-1 date."
    )


class AcquireConfig(_Strict):
    """Scene selection, harmonization and stacking."""

    timesteps: int = Field(4, gt=0, description="Timesteps per modality (TerraMind temporal T).")
    s2_bands: list[str] = Field(default_factory=lambda: list(S2_BANDS), description="S2 band order.")
    s1_bands: list[str] = Field(default_factory=lambda: ["vv", "vh"], description="S1 band order.")
    s2_max_scene_cloud_pct: float = Field(
        90.0, ge=0, le=100, description="Scenes above this eo:cloud_cover are not considered."
    )
    s2_min_clear_fraction: float = Field(
        0.05, ge=0, le=1, description="A block needs at least this SCL clear fraction per timestep."
    )
    scl_not_clear: list[int] = Field(
        default_factory=lambda: [0, 1, 3, 8, 9, 10],
        description="SCL classes treated as not clear (no data, saturated, shadow, cloud, cirrus).",
    )
    s2_offset_start: str = Field(
        "2022-01-25", description="First acquisition date with processing baseline >= 04.00."
    )
    s2_offset_dn: int = Field(1000, description="BOA_ADD_OFFSET removed from L2A digital numbers.")
    s1_widen_step_days: int = Field(7, gt=0, description="Radar search window widening step.")
    s1_max_widen_days: int = Field(21, ge=0, description="Most days the radar window may widen.")
    s2_selection_resolution_m: float = Field(
        80.0, gt=0, description="Resolution at which SCL is read to rank scenes per block (coarse = "
        "cheap; a divisor of the chip size in metres keeps it on the lattice).",
    )
    read_threads: int = Field(2, gt=0, description="Threads reading assets inside one block.")
    chip_ids: list[str] = Field(
        default_factory=list,
        description="Acquire only these chip IDs of the grid (partial runs, tests, benchmarks); "
        "empty = every chip of the grid.",
    )


class AdapterConfig(_Strict):
    """One LoRA adapter in the published TerraMind-NYC-Adapters format.

    Files in the folder: ``adapter_config.json`` (peft LoraConfig), ``adapter_model.safetensors``
    (LoRA on attn.qkv/attn.proj), ``decoder_head.safetensors`` (neck, decoder, head).
    """

    source: str = Field(
        description="hf://<repo>@<revision>/<folder> (pinned commit) or a local folder path; "
        "'{output_root}' is replaced by run.output_root."
    )
    sha256: dict[str, str] = Field(
        default_factory=dict,
        description="Expected sha256 per adapter file name. A file without a pinned hash is refused "
        "while infer.require_sha256 is true (`nyceo weights fetch` verifies them against the hub and writes "
        "them to the config's pin file, <stem>.pins.yaml, applied on load).",
    )
    backbone: str = Field(description="terratorch backbone, e.g. terramind_v1_base or terramind_v1_base_tim.")
    tim_modalities: list[str] = Field(default_factory=list, description="TiM modalities, e.g. [LULC].")
    classes: list[str] = Field(description="Class names in output-channel order.")
    colors: list[str] = Field(description="Hex colour per class, for colour tables and quicklooks.")
    norm_means: dict[str, list[float]] = Field(description="Per-modality input means (S2L2A, S1RTC, DEM).")
    norm_stds: dict[str, list[float]] = Field(description="Per-modality input standard deviations.")
    operating_points: dict[str, float] = Field(
        default_factory=dict, description="Named probability thresholds (e.g. default: 0.5)."
    )
    demo_seed: int | None = Field(
        None, description="Demo only: seed that `nyceo adapters make-demo` writes this (untrained) adapter with."
    )

    @model_validator(mode="after")
    def _colours_match_classes(self) -> "AdapterConfig":
        if len(self.colors) != len(self.classes):
            raise ValueError(
                f"{len(self.classes)} classes but {len(self.colors)} colors; give one colour per class"
            )
        if set(self.norm_means) != set(self.norm_stds):
            raise ValueError("norm_means and norm_stds must name the same modalities")
        for mod, means in self.norm_means.items():
            stds = self.norm_stds[mod]
            if len(means) != len(stds) or any(s <= 0 for s in stds):
                raise ValueError(f"normalization of {mod}: one positive std per mean is needed")
        return self


class InferConfig(_Strict):
    """Tiled TerraMind inference."""

    base_weights: str = Field(
        "hf://ibm-esa-geospatial/TerraMind-1.0-base@fb96c70d0a5f68dcc44030b89cbfd8ec3fb0c67a/TerraMind_v1_base.pt",
        description="Base checkpoint: hf://repo@revision/file, a local path, or 'none' (seeded random, demo).",
    )
    base_sha256: str = Field("", description="Expected sha256 of the base checkpoint ('' = not pinned).")
    require_sha256: bool = Field(
        True, description="Refuse adapter files (and a base checkpoint) whose sha256 is not pinned here."
    )
    hf_cache_dir: str | None = Field(None, description="Hugging Face cache folder (None = HF_HOME default).")
    offline: bool | None = Field(
        None, description="Never contact the hub; None follows HF_HUB_OFFLINE. Files come from the cache."
    )
    random_base_seed: int = Field(0, description="Seed of the random base when base_weights is 'none'.")
    tim_seed: int = Field(0, description="Seed of TiM token generation (reset before every forward).")
    tim_temperature: float = Field(
        1.0, ge=0, description="TiM token sampling temperature (TerraMind default 1.0; 0 = argmax, "
        "deterministic and ~2x cheaper on CPU than top-p sampling)."
    )
    tim_top_p: float = Field(0.8, ge=0, le=1, description="TiM top-p sampling threshold (TerraMind default 0.8; 0 = off).")
    overlap_fraction: float = Field(0.5, ge=0, lt=1, description="Window overlap (0.5 = stride 112 px).")
    batch_size: int = Field(8, gt=0, description="Windows per forward pass.")
    device: str = Field("auto", description="auto (CUDA/ROCm, then MPS, then CPU), cpu, cuda, cuda:N or mps.")
    amp_dtype: Literal["bfloat16", "float16", "float32"] = Field(
        "bfloat16", description="Autocast dtype on GPU (CPU runs float32 unless cpu_amp is true)."
    )
    cpu_amp: bool = Field(False, description="Also autocast to amp_dtype on CPU.")
    cpu_threads: int | None = Field(
        None, gt=0, description="torch intra-op threads on CPU (None = every core available to the process)."
    )
    sdpa: bool = Field(True, description="Compute unfused attention modules with scaled_dot_product_attention.")
    heads_resident: bool = Field(
        True, description="Hold every adapter's neck/decoder/head in memory (fastest swaps). False keeps "
        "only the active adapter's and re-reads the others' from their checked safetensors on a swap "
        "(memory: base + one head + all LoRA).",
    )
    tta_flips: bool = Field(False, description="Flip test-time augmentation (4 flips of y/x, averaged).")
    deployment_pickup_timeout_s: float = Field(
        900.0, gt=0, description="With the monthly flow's infer_deployment: how long a run of that deployment "
        "may wait for a worker of its pool to start it before it is cancelled and the stage fails naming the "
        "pool (no limit once a worker runs it).",
    )
    # --- tiled engine (nyceo/infer) ---
    block_size_chips: int | None = Field(
        None, gt=0, description="Inference block edge in chips (None = grid.block_size_chips). Memory of the "
        "engine ~ 2 x (block + 2)^2 chips of stack (~7 MB per chip); windows straddling block borders run "
        "in both blocks ((2B+1)^2 / (2B)^2 at 50 % overlap: +13 % compute at B=8, +27 % at B=4).",
    )
    prefetch_blocks: bool = Field(
        True, description="Read the next block in a background thread while the current one is computed "
        "(doubles the stack memory held; turn off to save memory).",
    )
    blend_taper: Literal["hann", "triangular", "box"] = Field(
        "hann", description="Window weight for blending overlaps (hann: seamless; box: plain mean, seams)."
    )
    blend_floor: float = Field(
        1e-3, gt=0, le=1, description="Smallest window weight (at window borders), so edge pixels keep a weight."
    )
    nodata_policy: Literal["mask", "predict"] = Field(
        "mask", description="mask: pixels with no valid S2 observation at any timestep are written nodata; "
        "predict: they get the blended prediction of their (filled) windows. Windows without any valid "
        "S2 pixel are always skipped.",
    )
    fill_fallback: dict[str, list[float]] = Field(
        default_factory=lambda: {
            "S2L2A": [1390.458, 1503.317, 1718.197, 1853.91, 2199.1, 2779.975, 2987.011, 3083.234,
                      3132.22, 3162.988, 2424.884, 1857.648],
            "S1RTC": [-10.93, -17.329],
            "DEM": [670.665],
        },
        description="Per-band fill for masked input pixels when a window has no valid pixel of that band "
        "(otherwise the window's band mean is used); default TerraMind pretraining means.",
    )
    adapters: dict[str, AdapterConfig] = Field(default_factory=dict, description="Adapter registry.")


class MosaicConfig(_Strict):
    """Cloud-Optimized GeoTIFF outputs."""

    compression: Literal["DEFLATE", "ZSTD", "LZW"] = Field("ZSTD", description="COG compression.")
    blocksize_px: int = Field(512, gt=0, description="COG internal tile size.")
    quicklook_max_px: int = Field(1024, gt=0, description="Longest edge of quicklook PNGs.")
    thumbnail_max_px: int = Field(256, gt=0, description="Longest edge of STAC thumbnail PNGs.")
    probability_classes: dict[str, str] = Field(
        default_factory=dict,
        description="Adapter name -> class whose probability is published as <area>_probability.tif "
        "(e.g. {buildings_nyc: building}); adapters not listed get class map and confidence only.",
    )
    output_root: str | None = Field(
        None, description="Where COGs, quicklooks and catalog.json go (local path or fsspec URL, "
        "e.g. s3://bucket/prefix); None = run.output_root. Prediction stores are read from run.output_root.",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for output_root (e.g. endpoint_url); keep "
        "credentials in the environment (AWS_ACCESS_KEY_ID, ...), not here.",
    )


class DaskConfig(_Strict):
    """Where parallel work (acquisition blocks, mosaics) runs: a local cluster or an existing one."""

    scheduler_address: str | None = Field(
        None, description="tcp://host:port of an existing cluster; None starts a local one."
    )
    n_workers: int | None = Field(
        None, gt=0, description="Local worker processes; None sizes to the machine (cores / threads)."
    )
    threads_per_worker: int = Field(1, gt=0, description="Threads per local worker.")
    memory_limit: str = Field("auto", description="Per-worker memory limit of a local cluster.")


class RunConfig(_Strict):
    """Where outputs go."""

    name: str = Field("nyc", description="Run name, recorded in provenance (never in a key).")
    output_root: str = Field("outputs", description="Local path or fsspec URL (s3://…) for outputs.")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for output_root (e.g. {endpoint_url: …}); applied to "
        "every read and write of every stage (nyceo.fs). Keep credentials in the environment.",
    )
    lock_timeout_s: float = Field(
        3600.0, ge=0, description="How long a run waits for another run holding the same (month, stage) lock "
        "before failing with the holder's name.",
    )
    lock_stale_s: float = Field(
        300.0, gt=0, description="A lock on another host whose heartbeat is older than this is broken.",
    )
    memory_limit_gb: float | None = Field(
        None, ge=0, description="Memory acquire/infer may use at peak: `nyceo run|acquire|infer` refuse a configuration "
        "whose estimate (nyceo.memory) exceeds it. None = the memory available when the command starts; 0 = no check.",
    )


class ReferenceConfig(_Strict):
    """One reference map an evaluation compares predictions with (evaluate.references.<name>)."""

    kind: Literal["raster", "vector", "stac"] = Field(
        description="raster (a GeoTIFF/COG/VRT, any CRS and resolution, resampled onto the chip grid by "
        "mode), vector (GeoParquet/GPKG/Shapefile/GeoJSON with a class attribute, rasterized with the "
        "pixel-centre rule) or stac (a collection's asset: esa-worldcover/map on Planetary Computer; "
        "nyceo-embedded-truth offline)."
    )
    path: str = Field("", description="raster/vector: file path or URL.")
    collection: str = Field("", description="stac: collection id (e.g. esa-worldcover, nyceo-embedded-truth).")
    asset: str = Field("", description="stac: asset key (e.g. map, landcover, buildings).")
    stac_url: str | None = Field(
        None, description="stac: STAC API root to search; None = the pipeline's own catalog (catalog section)."
    )
    start: str = Field("2000-01-01", description="stac: search items dated from (inclusive, YYYY-MM-DD).")
    end: str = Field("2100-01-01", description="stac: search items dated before (exclusive, YYYY-MM-DD).")
    class_attribute: str = Field("", description="vector: attribute holding each feature's reference code.")
    id_attribute: str = Field("", description="vector: attribute naming features in messages ('' = row number).")
    background_class: str | None = Field(
        None, description="vector: class of pixels no feature covers (e.g. background for building "
        "footprints); None = such pixels are reference nodata."
    )
    fraction_threshold: float | None = Field(
        None, gt=0, le=1, description="vector: also evaluate the fraction-covered variant: a pixel takes a "
        "feature class when features of that class cover at least this fraction of it (10x10 supersampling)."
    )
    invalid_geometry: Literal["repair", "refuse"] = Field(
        "repair", description="vector: invalid geometries are repaired with shapely make_valid (ids "
        "reported) or refused with an error."
    )
    remap: dict[str, str] = Field(
        description="Reference code (raster value or attribute value, as text) -> adapter class name. "
        "Every code present in the reference must be here or in nodata."
    )
    nodata: list[str] = Field(default_factory=list, description="Reference codes excluded as nodata (counted).")
    adapters: list[str] = Field(description="Adapters this reference evaluates (their class lists hold the remap targets).")

    @field_validator("remap", mode="before")
    @classmethod
    def _codes_as_text(cls, value: Any) -> Any:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("nodata", mode="before")
    @classmethod
    def _nodata_as_text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _fields_for_kind(self) -> "ReferenceConfig":
        need = {"raster": ["path"], "vector": ["path", "class_attribute"], "stac": ["collection", "asset"]}[self.kind]
        missing = [f for f in need if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.kind} reference needs {missing}")
        return self


class EvaluateConfig(_Strict):
    """Accuracy against reference maps, probes over known places, threshold sweeps (nyceo/evaluate)."""

    references: dict[str, ReferenceConfig] = Field(
        default_factory=dict, description="Named references; none = the evaluate stage is skipped."
    )
    probes_file: str | None = Field(
        None, description="YAML of named places and rules (configs/probes_nyc.yaml); None = no probes."
    )
    sweep_classes: dict[str, str] = Field(
        default_factory=dict, description="Adapter -> class whose stored probability is swept over thresholds "
        "(binary adapters, e.g. {buildings_nyc: building})."
    )
    sweep_thresholds: list[float] = Field(
        default_factory=lambda: [round(0.05 * i, 2) for i in range(1, 20)],
        description="Probability thresholds of the sweep (a pixel is positive when p >= threshold).",
    )
    confidence_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of the area-weighted intervals.")


class ChangePersistenceConfig(_Strict):
    """MapBiomas-style temporal rule for change layers."""

    window_months: int = Field(
        1, ge=1, le=6, description="Month-over-month: how many following months must show the new class "
        "for a provisional change to become confirmed (a return to the old class in them drops it).",
    )
    yoy_neighbour_months: int = Field(
        1, ge=0, le=6, description="Year-over-year: months on each side of M and of M-12 whose class maps "
        "must agree with the change (those that exist); 0 = no persistence check for year-over-year.",
    )


class ChangeNoiseConfig(_Strict):
    """How the noise floor (the 'no change' null) is measured."""

    method: Literal["split_timesteps"] = Field(
        "split_timesteps", description="split_timesteps: predict the same month twice with the real model "
        "from two disjoint halves of its timesteps ({0,1} vs {2,3}, each repeated to the stack's length) "
        "on a seeded sample of chips.",
    )
    sample_fraction: float = Field(0.1, gt=0, le=1, description="Fraction of the month's chips predicted twice.")
    min_chips: int = Field(2, ge=1, description="At least this many chips are sampled (when the area has them).")
    seed: int = Field(0, description="Seed of the chip sample.")


class ChangeConfig(_Strict):
    """Change layers: month-over-month (mom) and year-over-year (yoy), gated by a measured noise floor."""

    enabled: bool = Field(True, description="Run the change stage in the monthly flow.")
    pairs: list[Literal["mom", "yoy"]] = Field(
        default_factory=lambda: ["mom", "yoy"], description="mom: M vs M-1; yoy: M vs M-12."
    )
    adapters: list[str] | None = Field(None, description="Adapters to compare; None = every infer adapter.")
    false_alarm_rate: float = Field(
        0.01, gt=0, lt=0.5, description="Per-class threshold = smallest |dp| exceeded by at most this "
        "fraction of pixels under the measured null (e.g. 0.01: the 99th percentile).",
    )
    min_confidence: float = Field(
        0.5, ge=0, le=1, description="Both months' confidence (max p) must reach this for a pixel to count as changed.",
    )
    building_class: dict[str, str] = Field(
        default_factory=dict, description="Adapter -> class whose new/vanished pixels and probability "
        "change are published (e.g. {buildings_nyc: building}).",
    )
    persistence: ChangePersistenceConfig = Field(default_factory=ChangePersistenceConfig)
    noise: ChangeNoiseConfig = Field(default_factory=ChangeNoiseConfig)
class PolygonLayerConfig(_Strict):
    """A user polygon layer for zonal figures (sewersheds, drainage areas, districts): any CRS."""

    name: str = Field(description="Short layer name used in output file names (e.g. sewersheds).")
    path: str = Field(description="GeoParquet, GeoPackage, Shapefile or GeoJSON file (relative paths: from the "
                      "working directory; '{output_root}' is replaced by run.output_root).")
    id_column: str = Field(description="Column with a unique id per polygon.")
    name_column: str | None = Field(None, description="Column with a readable name (None = the id).")
    category_column: str | None = Field(
        None, description="Column splitting the stormwater feed (e.g. sewer type: combined / separate)."
    )
    layer: str | None = Field(None, description="Layer inside a multi-layer file (GeoPackage); None = the first.")


class HazardLayerConfig(_Strict):
    """A hazard polygon layer for exposure overlays (flood zones, inundation extents, heat areas): any CRS."""

    name: str = Field(description="Short hazard name used in outputs (e.g. fema_100yr).")
    path: str = Field(description="Vector file, as PolygonLayerConfig.path.")
    zone_column: str = Field(description="Attribute naming the zone of each polygon (e.g. FLD_ZONE).")
    layer: str | None = Field(None, description="Layer inside a multi-layer file; None = the first.")
    label: str = Field("", description="What the layer is, shown in the report (say so when illustrative).")


class PopulationLayerConfig(_Strict):
    """Polygons with a population count (e.g. census tracts), allocated to zones by area share."""

    path: str = Field(description="Vector file, as PolygonLayerConfig.path.")
    count_column: str = Field(description="Column with the people count of each polygon.")
    layer: str | None = Field(None, description="Layer inside a multi-layer file; None = the first.")


class ZonalConfig(_Strict):
    """Zonal figures per borough, NTA and user polygon layer; heat-island, stormwater and exposure feeds."""

    adapters: list[str] = Field(default_factory=list, description="Adapters summarised (empty = every adapter).")
    boroughs: bool = Field(True, description="Figures per borough (DCP 24C boundaries).")
    ntas: bool = Field(True, description="Figures per 2020 Neighborhood Tabulation Area (all 262).")
    layers: list[PolygonLayerConfig] = Field(default_factory=list, description="User polygon layers.")
    impervious_classes: list[str] = Field(
        default_factory=lambda: ["developed"], description="Classes counted as impervious / developed."
    )
    vegetation_classes: list[str] = Field(
        default_factory=lambda: ["forest", "herbaceous"], description="Classes counted as vegetation."
    )
    building_class: str = Field("building", description="Class whose area is building area (buildings adapters).")
    feed_cell_m: float = Field(
        100.0, gt=0, description="Cell of the heat-island grid in metres: a multiple of grid.resolution_m. Cells "
        "nest 10 x 10 pixels and are aligned to the lattice origin (2240 m chips are not a multiple of 100 m, "
        "so chip borders may cross a cell).",
    )
    ndvi: bool = Field(True, description="Median NDVI of the month's clear S2 observations (model-independent).")
    hazards: list[HazardLayerConfig] = Field(default_factory=list, description="Hazard layers for exposure.")
    population: PopulationLayerConfig | None = Field(None, description="Optional population layer for exposure.")
    invalid_geometry: Literal["repair", "refuse"] = Field(
        "repair", description="Invalid polygons: repair with make_valid (ids reported) or refuse the layer."
    )
    ci_level: float = Field(0.95, gt=0, lt=1, description="Confidence level of share intervals (needs evaluation).")
    coverage_cache: str | None = Field(
        None, description="Folder or URL of cached coverage fractions (None = <output_root>/zonal_cache, on "
        "object storage too: content-keyed, shared by every machine writing that output root)."
    )


class ReportConfig(_Strict):
    """The monthly run report (HTML + Markdown)."""

    title: str = Field("New York City land cover", description="Report title.")
    max_table_rows: int = Field(300, gt=0, description="Rows shown per table in the report (files keep all).")
    history_months: int = Field(24, ge=0, description="Earlier months read for the time-series charts.")
    embed_images: bool = Field(False, description="Embed images as data URIs (one file) instead of beside it.")


class TrainSplitConfig(_Strict):
    """Spatial train/val/test split: lattice-aligned blocks of chips, assigned by a hash of the block id."""

    block_chips: int = Field(2, gt=0, description="Split block edge in chips (a block goes to one split).")
    buffer_chips: int = Field(1, ge=0, description="No chip of one split within this many chips (Chebyshev "
                              "distance on the lattice) of a chip of another split; chips in the buffer are dropped.")
    val_fraction: float = Field(0.15, gt=0, lt=1, description="Share of blocks for validation.")
    test_fraction: float = Field(0.15, gt=0, lt=1, description="Share of blocks for the test split.")
    salt: str = Field("nyceo-split-1", description="Hash salt; change it to draw another split.")
    min_chips: dict[str, int] = Field(
        default_factory=lambda: {"train": 2, "val": 1, "test": 1},
        description="Fewest chips each split needs; fewer is an error before training.",
    )


class TrainLabelsConfig(_Strict):
    """Where the labels come from and how their codes become class indices."""

    source: str = Field(
        description="stac:<collection>/<asset> (the configured catalog, e.g. stac:nyceo-embedded-truth/landcover), "
        "a raster file path (read onto the chip grid with mode resampling) or a vector layer (.gpkg, .parquet/"
        ".geoparquet, .shp, .geojson/.json, .fgb; any CRS; rasterized on the chip grid with the pixel-centre rule)."
    )
    attribute: str = Field("", description="Vector sources: the attribute holding each feature's integer label code.")
    id_attribute: str = Field("", description="Vector sources: attribute naming features in messages ('' = row number).")
    remap: dict[int, int] = Field(description="Label code -> class index (channel order of the adapter's classes).")
    ignore_codes: list[int] = Field(default_factory=list, description="Label codes left out of the loss "
                                    "(become ignore_index), e.g. the raster's nodata.")


class TrainAdapterConfig(_Strict):
    """How one adapter of infer.adapters is trained (same name); the published recipe, reduced at will."""

    labels: TrainLabelsConfig
    months: list[str] = Field(description="Months (YYYY-MM) whose acquire stacks are the inputs.")
    chip_ids: list[str] = Field(default_factory=list, description="Only these chips (empty = every chip of the stacks).")
    max_chips: int | None = Field(None, gt=0, description="At most this many chips, drawn by a hash of their id "
                                  "(reduced recipes, e.g. the CPU demo); None = all.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: float = Field(32, gt=0, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_targets: list[str] = Field(default_factory=lambda: ["attn.qkv", "attn.proj"],
                                    description="LoRA target modules of the encoder blocks.")
    class_weights: list[float] | None = Field(None, description="Loss weight per class (None = equal).")
    ignore_index: int = Field(255, ge=0, description="Label value left out of loss and metrics.")
    probe_epochs: int = Field(0, ge=0, description="Epochs of neck/decoder/head on encoder features computed once "
                              "per chip, before LoRA fine-tuning (probe-then-fine-tune; 0 = none).")
    probe_lr: float | None = Field(None, gt=0, description="Learning rate of the probe phase (None = lr).")
    max_epochs: int = Field(50, ge=0, description="Most epochs of LoRA fine-tuning (0 = the probe phase only: the "
                            "exported LoRA is peft's identity initialisation).")
    patience: int = Field(5, gt=0, description="Early stopping: epochs without a better val mIoU.")
    batch_size: int = Field(8, gt=0, description="Chips per step.")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay.")
    flips: bool = Field(True, description="Random flips of y/x as training augmentation.")
    bn_momentum: float | None = Field(
        0.1, gt=0, le=1, description="Momentum of the decoder's BatchNorm running statistics; None = cumulative "
        "average over all training batches (short runs: running statistics that match the final weights better).",
    )
    seed: int = Field(0, description="Seed of the run (the first of --seeds N).")
    average_last: int = Field(0, ge=0, description="Weight averaging ('soup'): export the average of the trainable "
                              "weights (neck/decoder/head + LoRA, BatchNorm statistics too) of the last K epochs of "
                              "the final phase when it validates at least as well as the best checkpoint (0 = off).")
    split: TrainSplitConfig = Field(default_factory=TrainSplitConfig)
    auto: bool = Field(False, description="Train before inference when the exported adapter is missing or its "
                       "inputs changed (the offline demo); otherwise only `nyceo adapters train` trains.")

    @model_validator(mode="after")
    def _some_training(self) -> "TrainAdapterConfig":
        if self.probe_epochs + self.max_epochs == 0:
            raise ValueError("probe_epochs and max_epochs are both 0: nothing would be trained; set either above 0")
        return self


class TrainConfig(_Strict):
    """Training LoRA adapters from labels on the chip grid (nyceo/train)."""

    root: str = Field("{output_root}/train", description="Runs, checkpoints, logs, splits and manifests.")
    gpu_precision: str = Field("bf16-mixed", description="Lightning precision on a GPU.")
    cpu_precision: str = Field("32-true", description="Lightning precision on CPU (bf16-mixed uses AMX/AVX512-BF16 "
                               "where the CPU has it: ~3x faster training steps; part of the training key).")
    cpu_threads: int | None = Field(None, gt=0, description="torch threads on CPU (None = all cores).")
    adapters: dict[str, TrainAdapterConfig] = Field(default_factory=dict, description="Training recipes by adapter.")


class PipelineConfig(_Strict):
    """The whole configuration."""

    _source_path: str | None = PrivateAttr(None)  # the file it was loaded from (error messages name it)
    run: RunConfig = Field(default_factory=RunConfig)
    grid: GridConfig = Field(default_factory=GridConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    acquire: AcquireConfig = Field(default_factory=AcquireConfig)
    infer: InferConfig = Field(default_factory=InferConfig)
    mosaic: MosaicConfig = Field(default_factory=MosaicConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    change: ChangeConfig = Field(default_factory=ChangeConfig)
    zonal: ZonalConfig = Field(default_factory=ZonalConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of the resolved configuration (provenance, cache keys)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys valid beside ``loc[-1]`` (walking PipelineConfig's sections and mappings of models)."""
    import typing

    model: Any = PipelineConfig
    for part in loc[:-1]:
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return []
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _format_errors(err: ValidationError, path: Path) -> str:
    import difflib

    lines = [f"configuration file {path} is invalid:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(e["loc"][-1]), _known_keys(tuple(e["loc"])), n=1)
            hint = f"did you mean '{'.'.join([*map(str, e['loc'][:-1]), close[0]])}'? " if close else ""
            lines.append(f"  - unknown key '{key}': {hint}check its spelling against configs/default.yaml")
        else:
            lines.append(f"  - {key}: {e['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, pins: bool = True) -> PipelineConfig:
    """Load and validate ``path``; ``overrides`` ({"a.b": value}) are applied on top.

    With ``pins`` the pin file beside it (``<stem>.pins.yaml``, written by ``nyceo weights fetch``)
    is applied first (``nyceo.pins``).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist; pass -c configs/demo.yaml or another file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration file {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"configuration file {path} must hold a mapping at the top level")
    if pins:
        from nyceo.pins import PinsError, apply_pins

        try:
            apply_pins(raw, path, InferConfig.model_fields["base_weights"].default)
        except PinsError as exc:
            raise ConfigError(str(exc)) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"pin file beside {path} is malformed ({type(exc).__name__}: {exc}); run "
                              f"`nyceo weights fetch -c {path}` to write it again") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path)) from None
    config._source_path = str(path)
    from nyceo.fs import configure

    configure(config)
    return config
