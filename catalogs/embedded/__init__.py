"""The embedded city: a seeded, offline, synthetic New York served as a static STAC catalog.

``EmbeddedCatalog(root, seed)`` implements ``SceneCatalog``: ``search`` generates the month(s)
[start, end) touches on first use (Sentinel-2 and Sentinel-1 separately, so widening a radar
window into a neighbouring month does not build that month's optical scenes), then answers from
the static catalogs on disk. Collection ids, asset keys, dtypes, nodata and properties follow
Microsoft Planetary Computer (``sentinel-2-l2a``, ``sentinel-1-rtc``, ``cop-dem-glo-30``); the
truth rasters are items of ``nyceo-embedded-truth`` (assets ``landcover``, ``buildings``).

Layout: ``<root>/s<seed>-<city|bbox-…>/{static,YYYY-MM/sentinel-2-l2a,YYYY-MM/sentinel-1-rtc}/``
each with ``catalog.json`` and a ``_COMPLETE.json`` marker written last.
Scenes exist only within the real missions' lives as Planetary Computer holds them
(``missions.py``: Sentinel-2 from November 2016, S2B from March 2017, S2C instead of S2A from
2025-01-21, S1A from October 2014, S1B until 2021-12-23, S1C from 2025-05-20): a month before
them, or one no platform flew yet, has no scenes. Special months for tests: ``EmbeddedOptions(all_cloud_months=("2024-02",),
sparse_radar_months=("2024-03",))`` (config: ``catalog.embedded_all_cloud_months`` /
``catalog.embedded_sparse_radar_months``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pystac

from catalogs.embedded.city import (
    DEM_COLLECTION, S1_COLLECTION, S2_COLLECTION, TRUTH_COLLECTION, EmbeddedOptions,
    build_s1_month, build_s2_month, build_static,
)
from catalogs.embedded import changes as planted
from catalogs.embedded.landscape import CityGrid, city_grid
from catalogs.embedded.missions import MISSIONS_VERSION, month_cutoff
from catalogs.embedded.writer import GENERATOR_VERSION, ensure_unit
from catalogs.static import StaticCatalog, as_utc

if TYPE_CHECKING:
    from nyceo.config import CatalogConfig

__all__ = ["EmbeddedCatalog", "EmbeddedOptions", "months_touching"]
MAX_MONTHS_PER_SEARCH = 6


def months_touching(start: dt.datetime, end: dt.datetime) -> list[tuple[int, int]]:
    """(year, month) of every calendar month intersecting [start, end)."""
    start, end = as_utc(start), as_utc(end)
    out, y, m = [], start.year, start.month
    while dt.datetime(y, m, 1, tzinfo=dt.timezone.utc) < end:
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def _time_fields(until: dt.datetime | None) -> dict[str, Any]:
    """What a monthly unit's content depends on in time: the missions table, and for a month not
    over yet the day it was cut at (the unit is rebuilt when that day passes)."""
    return {"missions": MISSIONS_VERSION, **({"until": until.date().isoformat()} if until else {})}


class EmbeddedCatalog:
    """The seeded synthetic New York, generated on demand under ``root``."""

    def __init__(self, root: str | Path, seed: int,
                 bbox_lonlat: tuple[float, float, float, float] | None = None,
                 options: EmbeddedOptions | None = None) -> None:
        self.seed = int(seed)
        self.options = options or EmbeddedOptions()
        self.bbox_lonlat = tuple(bbox_lonlat) if bbox_lonlat else None
        variant = "city" if self.bbox_lonlat is None else "bbox-" + hashlib.sha1(
            repr(tuple(round(v, 6) for v in self.bbox_lonlat)).encode()).hexdigest()[:8]
        self.base = Path(root).resolve() / f"s{self.seed}-{variant}"
        self.name = f"embedded:{self.base}"
        self._grid: CityGrid | None = None
        self._static: dict[Path, StaticCatalog] = {}

    @classmethod
    def from_config(cls, config: "CatalogConfig") -> "EmbeddedCatalog":
        opts = EmbeddedOptions(tuple(config.embedded_all_cloud_months), tuple(config.embedded_sparse_radar_months))
        bbox = tuple(config.embedded_bbox_lonlat) if config.embedded_bbox_lonlat else None
        return cls(config.embedded_root, config.embedded_seed, bbox, opts)

    @property
    def grid(self) -> CityGrid:
        if self._grid is None:
            self._grid = city_grid(self.bbox_lonlat)
        return self._grid

    def _fingerprint(self, unit: str, **extra: Any) -> dict[str, Any]:
        return {"generator_version": GENERATOR_VERSION, "seed": self.seed, "unit": unit,
                "grid": list(asdict(self.grid).values()), **extra}

    def ensure_s2_month(self, year: int, month: int) -> Path:
        """Generate (once) the Sentinel-2 scenes of a month; returns its catalog.json."""
        key = f"{year:04d}-{month:02d}"
        cloud, until = key in self.options.all_cloud_months, month_cutoff(year, month)
        fp = self._fingerprint(f"{key}/s2", all_cloud=cloud, **_time_fields(until),
                               **planted.fingerprint(year, month))
        return ensure_unit(self.base / key / S2_COLLECTION, fp,
                           lambda out: build_s2_month(out, self.grid, self.seed, year, month, cloud, until))

    def ensure_s1_month(self, year: int, month: int) -> Path:
        """Generate (once) the Sentinel-1 scenes of a month; returns its catalog.json."""
        key = f"{year:04d}-{month:02d}"
        sparse, until = key in self.options.sparse_radar_months, month_cutoff(year, month)
        fp = self._fingerprint(f"{key}/s1", sparse=sparse, **_time_fields(until),
                               **planted.fingerprint(year, month))
        return ensure_unit(self.base / key / S1_COLLECTION, fp,
                           lambda out: build_s1_month(out, self.grid, self.seed, year, month, sparse, until))

    def ensure_static(self) -> Path:
        """Generate (once) the DEM tiles and truth rasters; returns their catalog.json."""
        return ensure_unit(self.base / "static", self._fingerprint("static"),
                           lambda out: build_static(out, self.grid, self.seed))

    def ensure_month(self, year: int, month: int) -> list[Path]:
        """Everything one month needs: S2, S1 and the static part."""
        return [self.ensure_s2_month(year, month), self.ensure_s1_month(year, month), self.ensure_static()]

    def truth_paths(self) -> dict[str, Path]:
        """Truth rasters on the 10 m grid: ``landcover`` (0 water, 1 developed, 2 forest,
        3 herbaceous, 4 other) and ``buildings`` (0/1)."""
        folder = self.ensure_static().parent / f"embedded-truth-s{self.seed}"
        return {"landcover": folder / "landcover.tif", "buildings": folder / "buildings.tif"}

    def _catalogs_for(self, collection: str, start: dt.datetime, end: dt.datetime) -> list[Path]:
        if collection in (DEM_COLLECTION, TRUTH_COLLECTION):
            return [self.ensure_static()]
        builders = {S2_COLLECTION: self.ensure_s2_month, S1_COLLECTION: self.ensure_s1_month}
        if collection not in builders:
            raise ValueError(
                f"the embedded catalog has no collection {collection!r}; it serves "
                f"{S2_COLLECTION}, {S1_COLLECTION}, {DEM_COLLECTION} and {TRUTH_COLLECTION}"
            )
        months = months_touching(start, end)
        if len(months) > MAX_MONTHS_PER_SEARCH:
            raise ValueError(
                f"search of {collection!r} from {start} to {end} spans {len(months)} months; the embedded "
                f"catalog generates scenes on demand and allows at most {MAX_MONTHS_PER_SEARCH} per search"
            )
        return [builders[collection](y, m) for y, m in months]

    def search(self, collection: str, bbox_lonlat: tuple[float, float, float, float],
               start: dt.datetime, end: dt.datetime,
               cql2_filter: dict[str, Any] | None = None) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``bbox_lonlat`` in [start, end), generated on demand.

        DEM items carry datetime 2021-04-22 as on Planetary Computer: like there, search them with
        a range that contains that date (e.g. 2000-01-01 .. 2100-01-01)."""
        found: list[pystac.Item] = []
        for path in self._catalogs_for(collection, start, end):
            cat = self._static.setdefault(path, StaticCatalog(path))
            found += cat.search(collection, bbox_lonlat, start, end, cql2_filter)
        return found

    def sign(self, item: pystac.Item) -> pystac.Item:
        """Local files: a copy, after checking the asset files exist."""
        return StaticCatalog(self.base / "catalog.json").sign(item)
