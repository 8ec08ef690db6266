"""The month's stack.zarr: skeleton, compatibility check, chip writes, block records, status.

Layout (contract in docs/ARCHITECTURE.md): Zarr v3, one chunk per chip in (y, x), arrays ``s2``
int16 (time, s2_band, y, x), ``s1`` float32 (time, s1_band, y, x), ``dem`` float32 (y, x),
``s2_valid``/``s1_valid`` uint8 (time, y, x), ``s2_date``/``s1_date`` int32 days since 1970-01-01
(time, chip_row, chip_col; written once at finalize). Side files beside the store, in
``<YYYY-MM>/acquire/`` (outside the Zarr hierarchy so readers see no foreign objects):
``plan.json`` (searched scenes), ``blocks/<block_id>.json`` (one atomic record per finished block,
so parallel workers never race on a shared attribute, listing the chunk files it wrote),
``complete.json``, ``skipped.json``. Each build (``stack@<k16>.zarr``, k16 = its fingerprint key)
has its own side folder ``<YYYY-MM>/acquire/<k16>/``; ``nyceo.versioned`` publishes a finished build
as ``stack.zarr``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dask.array as da
import fsspec
import numpy as np
import rioxarray  # noqa: F401 - registers the .rio accessor (CF spatial_ref)
import xarray as xr
import zarr

from nyceo.acquire.errors import StackMismatchError
from nyceo.config import PipelineConfig
from nyceo.grid import AreaGrid
from nyceo.io import join, write_json_atomic

DATE_UNITS = "days since 1970-01-01"
DATE_FILL = np.int32(-(2**31))
FILLS: dict[str, Any] = {"s2": np.int16(-32768), "s1": np.float32("nan"), "dem": np.float32("nan"),
                         "s2_valid": np.uint8(0), "s1_valid": np.uint8(0)}


def compressors(name: str) -> list[Any]:
    """Per-array codecs, chosen by measurement on the embedded city (benchmarks/acquire_bench.py):
    int16 S2 and the DEM compress best and fast with byte shuffle + zstd level 1 (Blosc); S1 dB and
    the flags with plain zstd level 1 (zarr's default, level 3, costs 1.5x the CPU for ~10 %)."""
    from zarr.codecs import BloscCodec, ZstdCodec

    if name in ("s2", "dem"):
        return [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")]
    return [ZstdCodec(level=1)]


def fingerprint(config: PipelineConfig, month: str, area: AreaGrid) -> dict[str, Any]:
    """Everything that decides the stack's content before the search (``nyceo.keys.stack_fingerprint``):
    grid, catalog identity, acquire settings (not read_threads), month, area."""
    from nyceo.keys import stack_fingerprint

    return stack_fingerprint(config, month, {"row0": area.row0, "col0": area.col0, "n_rows": area.n_rows,
                                              "n_cols": area.n_cols})


def fingerprint_hash(fp: dict[str, Any]) -> str:
    from nyceo.keys import digest

    return digest(fp)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else k))
    return out


def _exists(path: str) -> bool:
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p.rstrip("/") + "/zarr.json")


def check_compatible(path: str, fp: dict[str, Any]) -> bool:
    """True if a compatible store exists at ``path``, False if none; raise if it differs."""
    if not _exists(path):
        return False
    attrs = dict(zarr.open_group(path, mode="r").attrs)
    old = attrs.get("nyceo_fingerprint")
    if old is None:
        raise StackMismatchError(
            f"{path} exists but was not written by `nyceo acquire` (no nyceo_fingerprint attribute); "
            "move it away or choose another run.output_root"
        )
    if fingerprint_hash(old) != fingerprint_hash(fp):
        a, b = _flatten(old), _flatten(fp)
        diff = [f"{k}: store has {a.get(k)!r}, config has {b.get(k)!r}" for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)]
        raise StackMismatchError(
            f"{path} was written with a different grid or configuration:\n  " + "\n  ".join(diff[:12])
            + "\nDelete the store to rebuild it with this configuration, or point run.output_root elsewhere."
        )
    return True


def create_store(path: str, config: PipelineConfig, area: AreaGrid, fp: dict[str, Any]) -> None:
    """Write the empty store (metadata only; chunks appear as blocks are written)."""
    acq, cs = config.acquire, config.grid.chip_size_px
    t, h, w = acq.timesteps, area.height_px, area.width_px
    y, x = area.coords()

    def empty(name: str, shape: tuple[int, ...], chunks: tuple[int, ...]) -> da.Array:
        return da.full(shape, FILLS[name], dtype=FILLS[name].dtype, chunks=chunks)

    n2, n1 = len(acq.s2_bands), len(acq.s1_bands)
    ds = xr.Dataset(
        {
            "s2": (("time", "s2_band", "y", "x"), empty("s2", (t, n2, h, w), (t, n2, cs, cs))),
            "s1": (("time", "s1_band", "y", "x"), empty("s1", (t, n1, h, w), (t, n1, cs, cs))),
            "dem": (("y", "x"), empty("dem", (h, w), (cs, cs))),
            "s2_valid": (("time", "y", "x"), empty("s2_valid", (t, h, w), (t, cs, cs))),
            "s1_valid": (("time", "y", "x"), empty("s1_valid", (t, h, w), (t, cs, cs))),
        },
        coords={"time": np.arange(t), "s2_band": np.array(acq.s2_bands, dtype=object),
                "s1_band": np.array(acq.s1_bands, dtype=object),
                "y": y, "x": x},
    )
    ds["s2"].attrs.update(units="DN", description="harmonized L2A digital numbers (baseline offset removed)")
    ds["s1"].attrs.update(units="dB", description="RTC backscatter, 10*log10(linear power)")
    ds["dem"].attrs.update(units="m", description="Copernicus DEM height")
    for v in ("s2_valid", "s1_valid"):
        ds[v].attrs.update(flag_values=[0, 1, 2], flag_meanings="no_data observed_clear filled_from_other_timestep")
    ds = ds.rio.write_crs(config.grid.crs).rio.write_transform(area.transform)
    ds.attrs["nyceo_fingerprint"] = fp
    ds.attrs["provenance"] = {}
    # Flags keep their integer type on reading (0 is a meaning, not a missing value).
    # ``fill_value`` is the Zarr v3 array fill (what unwritten chips read as); ``_FillValue`` the CF mask.
    encoding = {name: {"_FillValue": None if name.endswith("_valid") else FILLS[name],
                       "fill_value": FILLS[name], "compressors": compressors(name)} for name in FILLS}
    ds.to_zarr(path, mode="w", compute=False, zarr_format=3, consolidated=False, encoding=encoding)


def write_chip(path_or_group: Any, slices: tuple[slice, slice], arrays: dict[str, np.ndarray]) -> None:
    """Write arrays (each ending in (y, x)) into the region ``slices`` (one chip, or a run of chips
    aligned to chunks). ``path_or_group``: a store path, a zarr group, or a dict of opened arrays."""
    group = zarr.open_group(path_or_group, mode="r+") if isinstance(path_or_group, str) else path_or_group
    ys, xs = slices
    for name, data in arrays.items():
        group[name][(Ellipsis, ys, xs)] = data


def write_dates(path: str, name: str, dates: np.ndarray) -> None:
    """Write the per-chip date array (time, chip_row, chip_col) as int32 days since 1970-01-01."""
    group = zarr.open_group(path, mode="r+")
    arr = group.create_array(name, shape=dates.shape, dtype="int32", fill_value=DATE_FILL,
                             chunks=dates.shape, dimension_names=("time", "chip_row", "chip_col"),
                             overwrite=True)
    arr[...] = dates
    arr.attrs.update(units=DATE_UNITS, calendar="proleptic_gregorian", _FillValue=int(DATE_FILL))


def write_chip_coords(path: str, area: AreaGrid) -> None:
    """1-D coordinates chip_row / chip_col (lattice indices) for the date arrays."""
    group = zarr.open_group(path, mode="r+")
    for name, values in (("chip_row", np.arange(area.row0, area.row0 + area.n_rows)),
                         ("chip_col", np.arange(area.col0, area.col0 + area.n_cols))):
        arr = group.create_array(name, shape=values.shape, dtype="int32", chunks=values.shape,
                                 dimension_names=(name,), overwrite=True)
        arr[...] = values


def set_attrs(path: str, **attrs: Any) -> None:
    zarr.open_group(path, mode="r+").attrs.update(attrs)


def side_path(store: str, *parts: str) -> str:
    """A path in a stack build's side folder: ``<month>/stack@<k16>.zarr`` -> ``<month>/acquire/<k16>/``
    (outside the Zarr hierarchy, one folder per build, removed with it)."""
    parent, _, name = store.rstrip("/").rpartition("/")
    build = name.rsplit(".", 1)[0].partition("@")[2] or "unversioned"
    return join(parent, "acquire", build, *parts)


def write_side_json(store: str, obj: Any, *parts: str) -> None:
    write_json_atomic(side_path(store, *parts), obj)


def read_side_json(store: str, *parts: str) -> Any | None:
    path = side_path(store, *parts)
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    with fs.open(p, "r") as f:
        return json.load(f)


def block_records(store: str) -> dict[str, dict[str, Any]]:
    """Finished-block records by block id ({} if none)."""
    fs, p = fsspec.core.url_to_fs(side_path(store, "blocks"))
    if not fs.exists(p):
        return {}
    out = {}
    for f in sorted(fs.ls(p, detail=False)):
        name = f.rsplit("/", 1)[-1]
        if name.endswith(".json") and not name.startswith("."):
            with fs.open(f, "r") as fh:
                out[name[:-5]] = json.load(fh)
    return out


def remove_store(store: str) -> None:
    """Delete the store and its side folder (records, plan)."""
    for path in (store, side_path(store)):
        fs, p = fsspec.core.url_to_fs(path)
        if fs.exists(p):
            fs.rm(p, recursive=True)


def remove_file(path: str) -> None:
    fs, p = fsspec.core.url_to_fs(path)
    if fs.exists(p):
        fs.rm(p)
