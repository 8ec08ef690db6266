"""Scenes from a STAC API (Microsoft Planetary Computer by default) through pystac-client.

Searches are POSTed with CQL2-JSON ``filter`` (the ``query`` extension is silently ignored by
some servers); pystac-client follows ``next`` links, so paging is handled. Transient HTTP
failures (connection errors, 429, 5xx) are retried with exponential backoff by urllib3; anything
else becomes a ``CatalogError`` naming the URL and the collection. Signing happens in ``sign()``,
right before assets are read — never at search time (Planetary Computer SAS tokens expire after
about 45 minutes).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Literal

import pystac
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3.util.retry import Retry

from catalogs.static import as_utc

LOG = logging.getLogger(__name__)
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
TRANSIENT_STATUS = (429, 500, 502, 503, 504)


class CatalogError(RuntimeError):
    """A catalog could not answer (bad URL, unknown collection, rejected filter, server down)."""


def _retry(max_retries: int, backoff_s: float) -> Retry:
    return Retry(
        total=max_retries, connect=max_retries, read=max_retries, status=max_retries,
        backoff_factor=backoff_s, status_forcelist=TRANSIENT_STATUS,
        allowed_methods=frozenset({"GET", "POST"}), raise_on_status=False,
        respect_retry_after_header=True,
    )


def _rfc3339(value: dt.datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StacApiCatalog:
    """A ``SceneCatalog`` over any STAC API with item search (Planetary Computer by default)."""

    def __init__(
        self,
        url: str = PLANETARY_COMPUTER_URL,
        signing: Literal["planetary_computer", "none"] = "planetary_computer",
        page_size: int = 100,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 60.0,
    ) -> None:
        if signing not in ("planetary_computer", "none"):
            raise ValueError(f"unknown signing {signing!r}; use 'planetary_computer' or 'none'")
        self.url = url.rstrip("/")
        self.signing = signing
        self.page_size = page_size
        self.name = f"stac_api:{self.url}"
        self.timeout_s = timeout_s
        self._io = StacApiIO(max_retries=_retry(max_retries, backoff_s), timeout=timeout_s)
        self._client: Client | None = None

    def _open(self) -> Client:
        if self._client is None:
            try:
                # Client.open resets the StacApiIO's timeout to its own argument (None = wait forever)
                self._client = Client.open(self.url, stac_io=self._io, timeout=self.timeout_s)
            except (requests.RequestException, APIError, pystac.STACError) as exc:
                raise CatalogError(
                    f"cannot open the STAC API at {self.url}: {exc}. Check catalog.url and the "
                    "network; transient failures were already retried"
                ) from exc
        return self._client

    def search(
        self,
        collection: str,
        bbox_lonlat: tuple[float, float, float, float],
        start: dt.datetime,
        end: dt.datetime,
        cql2_filter: dict[str, Any] | None = None,
    ) -> list[pystac.Item]:
        """Items of ``collection`` intersecting ``bbox_lonlat`` with datetime in [start, end).

        The API's datetime interval is closed, so items exactly at ``end`` are dropped here.
        """
        client = self._open()
        kwargs: dict[str, Any] = dict(
            method="POST", collections=[collection], bbox=list(bbox_lonlat),
            datetime=f"{_rfc3339(start)}/{_rfc3339(end)}", limit=self.page_size,
        )
        if cql2_filter is not None:
            kwargs.update(filter=cql2_filter, filter_lang="cql2-json")
        try:
            items = list(client.search(**kwargs).items())
        except (requests.RequestException, APIError) as exc:
            status = getattr(exc, "status_code", None)
            raise CatalogError(
                f"STAC search of collection {collection!r} at {self.url} failed"
                f"{f' with HTTP {status}' if status else ''}: {str(exc)[:500]}. Check the "
                "collection id (catalog.*_collection) and the CQL2 filter; transient errors "
                "were already retried"
            ) from exc
        end_utc = as_utc(end)
        kept = [it for it in items if it.datetime is None or as_utc(it.datetime) < end_utc]
        # some servers (stac-fastapi-geoparquet 0.0.7) ignore `collections`: enforce it here
        foreign = [it for it in kept if it.collection_id != collection]
        if foreign:
            LOG.warning("%s returned %d items of other collections for %r; dropped",
                        self.url, len(foreign), collection)
            kept = [it for it in kept if it.collection_id == collection]
        LOG.info("%s: %d %s items for %s", self.name, len(kept), collection, kwargs["datetime"])
        return sorted(kept, key=lambda it: (it.datetime or as_utc(start), it.id))

    def sign(self, item: pystac.Item) -> pystac.Item:
        """A copy of ``item`` with readable hrefs; Planetary Computer SAS tokens are fetched now."""
        if self.signing == "none":
            return item.clone()
        import planetary_computer

        try:
            return planetary_computer.sign(item.clone())
        except requests.RequestException as exc:
            raise CatalogError(
                f"signing scene {item.id!r} ({item.collection_id}) with Planetary Computer failed: "
                f"{exc}. Check the network, or set catalog.signing: none for unsigned sources"
            ) from exc
