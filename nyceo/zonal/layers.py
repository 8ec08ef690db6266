"""Polygon layers for zonal figures: boroughs, 2020 NTAs and user layers, checked and in the grid CRS.

Every layer becomes a :class:`ZoneLayer`: a GeoDataFrame in the grid CRS with columns ``zone_id``,
``zone_name``, ``category`` (None without a category attribute) and ``geometry``, plus the sha256
of the file it came from (coverage fractions are cached under it) and the ids of any features
repaired with ``make_valid``. Bad input is refused with the file, the feature and the fix.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import shapely

from nyceo.boundaries import BOROUGHS_FILE, NTAS_FILE, load_boroughs, load_ntas
from nyceo.config import PipelineConfig, PolygonLayerConfig
from nyceo.io import is_remote, sha256_file

log = logging.getLogger("nyceo.zonal")

VECTOR_SUFFIXES = (".parquet", ".geoparquet", ".gpkg", ".shp", ".geojson", ".json", ".fgb")


class LayerError(ValueError):
    """A polygon layer cannot be used; the message names the file, the feature and the fix."""


@dataclass
class ZoneLayer:
    """One checked polygon layer in the grid CRS."""

    name: str
    gdf: gpd.GeoDataFrame  # zone_id, zone_name, category, geometry
    source: str
    sha256: str
    repaired_ids: list[str] = field(default_factory=list)

    @property
    def has_category(self) -> bool:
        return bool(self.gdf["category"].notna().any())


def resolve_path(config: PipelineConfig, path: str) -> str:
    """A configured layer path with ``{output_root}`` filled in (a local path or a URL)."""
    return path.replace("{output_root}", config.run.output_root)


def _suffix(path: str) -> str:
    name = str(path).rstrip("/").rsplit("/", 1)[-1]
    return f".{name.rsplit('.', 1)[-1].lower()}" if "." in name else ""


def read_vector(path: str, layer: str | None = None, what: str = "layer") -> gpd.GeoDataFrame:
    """Read a GeoParquet / GeoPackage / Shapefile / GeoJSON file (local or URL; a shapefile must be local);
    clear errors for missing or foreign files."""
    from nyceo.zonal import remote

    if not remote.is_file(str(path)):
        raise LayerError(f"{what} file {path} does not exist; fix its path in the zonal section of the config")
    suffix = _suffix(path)
    if suffix not in VECTOR_SUFFIXES or (suffix == ".shp" and is_remote(str(path))):
        raise LayerError(f"{what} file {path}: unsupported format '{suffix}' here; use one of {VECTOR_SUFFIXES} "
                         "(a shapefile only on local disk: its sidecar files travel with it)")
    try:
        with remote.local_file(str(path)) as local:
            if suffix in (".parquet", ".geoparquet"):
                return gpd.read_parquet(local)
            return gpd.read_file(local, layer=layer) if layer else gpd.read_file(local)
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes one clear message
        raise LayerError(f"{what} file {path} could not be read as a vector layer: {exc}") from exc


def check_polygons(gdf: gpd.GeoDataFrame, source: str, ids: list[str], refuse_invalid: bool) -> tuple[gpd.GeoSeries, list[str]]:
    """Polygonal, valid geometries (repaired with make_valid) and the ids of the repaired features."""
    geom = gdf.geometry
    if gdf.crs is None:
        raise LayerError(
            f"{source} has no CRS; declare it (e.g. gdf.set_crs('EPSG:2263') and save, or add the .prj "
            "file of a shapefile) - coordinates cannot be placed on the map without one"
        )
    empty = [i for i, g in zip(ids, geom) if g is None or g.is_empty]
    if empty:
        raise LayerError(f"{source}: feature(s) {empty[:10]} have no geometry; drop them or fix them")
    invalid = ~shapely.is_valid(geom.values)
    repaired = [ids[i] for i in invalid.nonzero()[0]]
    if repaired:
        if refuse_invalid:
            reasons = [shapely.is_valid_reason(geom.values[i]) for i in invalid.nonzero()[0][:5]]
            raise LayerError(f"{source}: invalid geometries in feature(s) {repaired[:20]} ({reasons}); repair "
                             "them (e.g. shapely.make_valid) or set zonal.invalid_geometry: repair")
        fixed = shapely.make_valid(geom.values[invalid])
        fixed = [shapely.union_all(shapely.get_parts(g)[shapely.get_dimensions(shapely.get_parts(g)) == 2]) for g in fixed]
        geom = geom.copy()
        geom.values[invalid] = fixed
        log.warning("%s: repaired invalid geometries of feature(s) %s with make_valid", source, repaired)
    not_poly = [ids[i] for i, t in enumerate(geom.geom_type) if t not in ("Polygon", "MultiPolygon")]
    if not_poly:
        raise LayerError(f"{source}: feature(s) {not_poly[:10]} are not polygons ({set(geom.geom_type)}); "
                         "zonal figures need polygon layers")
    return geom, repaired


def _column(gdf: gpd.GeoDataFrame, col: str, source: str, role: str, config_key: str) -> list[str]:
    if col not in gdf.columns:
        raise LayerError(f"{source} has no column '{col}' ({role}); its columns are "
                         f"{[c for c in gdf.columns if c != gdf.geometry.name]} - fix zonal.{config_key}")
    return [str(v) for v in gdf[col]]


def make_layer(gdf: gpd.GeoDataFrame, name: str, source: str, sha256: str, crs: str, id_col: str,
               name_col: str | None = None, category_col: str | None = None, refuse_invalid: bool = False,
               city: shapely.Geometry | None = None, key_prefix: str = "layers[]") -> ZoneLayer:
    """Check a raw layer (ids, geometries, CRS, category, overlap with the city) and bring it to ``crs``."""
    ids = _column(gdf, id_col, source, "id_column", f"{key_prefix}.id_column")
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise LayerError(f"{source}: duplicate ids {dup[:10]} in column '{id_col}'; ids must be unique "
                         "(dissolve the duplicates, e.g. gdf.dissolve(by=id_column), or choose another id_column)")
    names = _column(gdf, name_col, source, "name_column", f"{key_prefix}.name_column") if name_col else ids
    cats = _column(gdf, category_col, source, "category_column", f"{key_prefix}.category_column") \
        if category_col else [None] * len(ids)
    geom, repaired = check_polygons(gdf, source, ids, refuse_invalid)
    out = gpd.GeoDataFrame({"zone_id": ids, "zone_name": names, "category": cats}, geometry=geom.values, crs=gdf.crs)
    out = out.to_crs(crs)
    if city is not None and not shapely.intersects(shapely.union_all(out.geometry.values), city):
        b = [round(v, 4) for v in gdf.to_crs("EPSG:4326").total_bounds]
        raise LayerError(f"{source} does not overlap the gridded city (its lon/lat bounds are {b}); check its CRS "
                         "(a wrong .prj or set_crs puts it elsewhere) or that it covers New York City")
    return ZoneLayer(name, out, source, sha256, repaired)


def builtin_layers(config: PipelineConfig) -> list[ZoneLayer]:
    """Boroughs and NTAs (as configured), from the vendored DCP 24C files."""
    crs, out = config.grid.crs, []
    if config.zonal.boroughs:
        b = load_boroughs(crs)
        gdf = gpd.GeoDataFrame({"zone_id": b["BoroCode"].astype(str), "zone_name": b["BoroName"], "category": None},
                               geometry=b.geometry.values, crs=crs)
        out.append(ZoneLayer("borough", gdf, str(BOROUGHS_FILE.name), sha256_file(BOROUGHS_FILE)))
    if config.zonal.ntas:
        n = load_ntas(crs)
        gdf = gpd.GeoDataFrame({"zone_id": n["NTA2020"], "zone_name": n["NTAName"], "category": n["BoroName"]},
                               geometry=n.geometry.values, crs=crs)
        out.append(ZoneLayer("nta", gdf, str(NTAS_FILE.name), sha256_file(NTAS_FILE)))
    return out


def user_layer(config: PipelineConfig, spec: PolygonLayerConfig, city: shapely.Geometry | None) -> ZoneLayer:
    path = resolve_path(config, spec.path)
    gdf = read_vector(path, spec.layer, f"zonal layer '{spec.name}'")
    return make_layer(gdf, spec.name, f"zonal layer '{spec.name}' ({path})", vector_sha256(path), config.grid.crs,
                      spec.id_column, spec.name_column, spec.category_column,
                      config.zonal.invalid_geometry == "refuse", city, f"layers[{spec.name}]")


def city_outline(config: PipelineConfig) -> shapely.Geometry:
    return shapely.union_all(load_boroughs(config.grid.crs).geometry.values)


def all_layers(config: PipelineConfig) -> list[ZoneLayer]:
    """Built-in and user layers, checked; duplicate layer names are an error."""
    layers = builtin_layers(config)
    if config.zonal.layers:
        city = city_outline(config)
        layers += [user_layer(config, spec, city) for spec in config.zonal.layers]
    names = [layer.name for layer in layers]
    if len(set(names)) != len(names):
        raise LayerError(f"zonal layer names {names} repeat; 'borough' and 'nta' are built in - rename the layer")
    return layers


def layer_file_hashes(config: PipelineConfig) -> dict[str, str]:
    """sha256 of every polygon file the zonal stage reads (for its key), without loading them."""
    out: dict[str, str] = {}
    if config.zonal.boroughs or config.zonal.hazards:
        out["borough"] = sha256_file(BOROUGHS_FILE)
    if config.zonal.ntas or config.zonal.hazards:
        out["nta"] = sha256_file(NTAS_FILE)
    for spec in config.zonal.layers:
        out[f"layer:{spec.name}"] = _hash_or_missing(resolve_path(config, spec.path))
    for spec in config.zonal.hazards:
        out[f"hazard:{spec.name}"] = _hash_or_missing(resolve_path(config, spec.path))
    if config.zonal.population:
        out["population"] = _hash_or_missing(resolve_path(config, config.zonal.population.path))
    return out


def vector_sha256(path: str | Path) -> str:
    """sha256 of a vector file (local or URL); a shapefile's .dbf/.prj/.shx sidecars are part of it."""
    from nyceo.zonal import remote

    if _suffix(str(path)) != ".shp":
        return remote.sha256_of(str(path))
    path = Path(path)
    parts = [sha256_file(p) for p in (path.with_suffix(s) for s in (".shp", ".shx", ".dbf", ".prj", ".cpg")) if p.is_file()]
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def _hash_or_missing(path: str) -> str:
    from nyceo.zonal import remote

    return vector_sha256(path) if remote.is_file(path) else f"missing:{path}"
