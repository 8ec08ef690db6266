"""The one interface every scene catalog implements (STAC API, static catalog, embedded city)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, runtime_checkable

import pystac


@runtime_checkable
class SceneCatalog(Protocol):
    """Find scenes and make their assets readable.

    ``search`` returns pystac Items whose asset hrefs may still need signing; ``sign`` is called
    right before assets are read (Planetary Computer tokens expire after ~45 minutes).
    """

    name: str

    def search(
        self,
        collection: str,
        bbox_lonlat: tuple[float, float, float, float],
        start: dt.datetime,
        end: dt.datetime,
        cql2_filter: dict[str, Any] | None = None,
    ) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``bbox_lonlat`` (minx, miny, maxx, maxy in
        EPSG:4326) with datetime in [start, end), optionally filtered by a CQL2-JSON expression."""
        ...

    def sign(self, item: pystac.Item) -> pystac.Item:
        """A copy of ``item`` whose asset hrefs can be read now."""
        ...
