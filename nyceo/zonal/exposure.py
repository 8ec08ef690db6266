"""Exposure overlays: hazard zones x boroughs and x NTAs — land, developed and building area inside,
and (optionally) people, allocated from a population layer by area share.

Hazard layers are configuration (``zonal.hazards``: path, zone attribute; any CRS): each layer is
checked like any zonal layer (CRS, repaired geometries, overlap), dissolved by its zone attribute and
intersected with the units (boroughs, NTAs). Each piece is then a zone of its own: its coverage is
cached like any layer's, so raster sums (developed, building) follow the same exact-coverage rule.
``land_km2`` is the piece's vector area (the DCP units are clipped to the shoreline, so it is land).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from nyceo.config import HazardLayerConfig, PipelineConfig, PopulationLayerConfig
from nyceo.keys import digest
from nyceo.zonal.layers import (LayerError, ZoneLayer, city_outline, make_layer, read_vector, resolve_path,
                                vector_sha256)


def load_hazard(config: PipelineConfig, spec: HazardLayerConfig) -> ZoneLayer:
    """A hazard layer dissolved by its zone attribute (zone_id = zone value)."""
    path = resolve_path(config, spec.path)
    raw = read_vector(path, spec.layer, f"hazard layer '{spec.name}'")
    source = f"hazard layer '{spec.name}' ({path})"
    if spec.zone_column not in raw.columns:
        raise LayerError(f"{source} has no column '{spec.zone_column}'; its columns are "
                         f"{[c for c in raw.columns if c != raw.geometry.name]} - fix zonal.hazards[{spec.name}].zone_column")
    raw = raw.assign(_fid=[str(i) for i in range(len(raw))])
    layer = make_layer(raw, spec.name, source, vector_sha256(path), config.grid.crs, "_fid",
                       category_col=spec.zone_column, refuse_invalid=config.zonal.invalid_geometry == "refuse",
                       city=city_outline(config))
    zones = layer.gdf.dissolve(by="category", as_index=False)
    gdf = gpd.GeoDataFrame({"zone_id": zones["category"], "zone_name": zones["category"], "category": zones["category"]},
                           geometry=zones.geometry.values, crs=layer.gdf.crs)
    return ZoneLayer(spec.name, gdf, source, layer.sha256, layer.repaired_ids)


def pieces(hazard: ZoneLayer, unit: ZoneLayer) -> ZoneLayer:
    """Hazard zone x unit intersections (zone_id '<zone>|<unit id>'), as a layer of their own."""
    h = hazard.gdf[["zone_id", "geometry"]].rename(columns={"zone_id": "hazard_zone"})
    u = unit.gdf[["zone_id", "zone_name", "geometry"]].rename(columns={"zone_id": "unit_id", "zone_name": "unit_name"})
    ov = gpd.overlay(h, u, how="intersection", keep_geom_type=True)
    ov = ov[ov.geometry.area > 0].reset_index(drop=True)
    gdf = gpd.GeoDataFrame({"zone_id": ov["hazard_zone"].astype(str) + "|" + ov["unit_id"].astype(str),
                            "zone_name": ov["unit_name"], "category": ov["hazard_zone"],
                            "hazard_zone": ov["hazard_zone"], "unit_id": ov["unit_id"], "unit_name": ov["unit_name"]},
                           geometry=ov.geometry.values, crs=hazard.gdf.crs)
    return ZoneLayer(f"exposure_{hazard.name}_{unit.name}", gdf, f"{hazard.source} x {unit.source}",
                     digest([hazard.sha256, unit.sha256]))


def allocate_population(piece_gdf: gpd.GeoDataFrame, population: gpd.GeoDataFrame, count_col: str) -> np.ndarray:
    """People per piece: each population polygon's count shared out by the fraction of its area inside."""
    pop = population[[count_col, "geometry"]].copy()
    pop["_area"] = pop.geometry.area
    pop["_pid"] = np.arange(len(pop))
    pc = piece_gdf[["geometry"]].assign(_piece=np.arange(len(piece_gdf)))
    ov = gpd.overlay(pc, pop, how="intersection", keep_geom_type=True)
    share = np.where(ov["_area"] > 0, ov.geometry.area / ov["_area"], 0.0)
    people = pd.Series(share * ov[count_col].astype(float).to_numpy()).groupby(ov["_piece"].to_numpy()).sum()
    out = np.zeros(len(piece_gdf))
    out[people.index.to_numpy(dtype=int)] = people.to_numpy()
    return out


def load_population(config: PipelineConfig, spec: PopulationLayerConfig) -> gpd.GeoDataFrame:
    path = resolve_path(config, spec.path)
    raw = read_vector(path, spec.layer, "population layer")
    source = f"population layer ({path})"
    if spec.count_column not in raw.columns:
        raise LayerError(f"{source} has no column '{spec.count_column}'; its columns are "
                         f"{[c for c in raw.columns if c != raw.geometry.name]} - fix zonal.population.count_column")
    raw = raw.assign(_fid=[str(i) for i in range(len(raw))])
    layer = make_layer(raw, "population", source, vector_sha256(path), config.grid.crs, "_fid",
                       refuse_invalid=config.zonal.invalid_geometry == "refuse", city=city_outline(config))
    counts = pd.to_numeric(raw[spec.count_column], errors="coerce")
    if counts.isna().any() or (counts < 0).any():
        bad = list(raw.loc[counts.isna() | (counts < 0), "_fid"][:10])
        raise LayerError(f"{source}: column '{spec.count_column}' is not a non-negative number in feature(s) {bad}")
    return layer.gdf.assign(**{spec.count_column: counts.to_numpy()})


def exposure_frame(piece: ZoneLayer, hazard_name: str, unit_layer: str, measures: pd.DataFrame,
                   population: np.ndarray | None) -> gpd.GeoDataFrame:
    """Rows per piece (and adapter, when ``measures`` has several): identity, land area, measures, people."""
    g = piece.gdf
    base = pd.DataFrame({"hazard": hazard_name, "hazard_zone": g["hazard_zone"].to_numpy(), "unit_layer": unit_layer,
                         "unit_id": g["unit_id"].to_numpy(), "unit_name": g["unit_name"].to_numpy(),
                         "land_km2": g.geometry.area.to_numpy() / 1e6})
    if population is not None:
        base["population"] = population
    rows = base.iloc[measures["_piece"].to_numpy()].reset_index(drop=True)
    rows = pd.concat([rows, measures.drop(columns="_piece").reset_index(drop=True)], axis=1)
    return gpd.GeoDataFrame(rows, geometry=g.geometry.iloc[measures["_piece"].to_numpy()].values, crs=g.crs)
