"""Catalog sources (STAC API, static catalog, embedded offline city) and vendored reference data.

``open_catalog(config.catalog)`` returns the ``SceneCatalog`` (catalogs/base.py) the config names:
``stac_api`` (Planetary Computer or any STAC API), ``static`` (a catalog.json on disk) or
``embedded`` (the seeded synthetic New York, generated month by month on demand).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from catalogs.base import SceneCatalog
    from nyceo.config import CatalogConfig


def open_catalog(config: "CatalogConfig") -> "SceneCatalog":
    """The catalog ``config.kind`` names, built from the catalog config section."""
    if config.kind == "stac_api":
        from catalogs.stac_api import StacApiCatalog

        return StacApiCatalog(config.url, signing=config.signing)
    if config.kind == "static":
        from catalogs.static import StaticCatalog

        return StaticCatalog(config.url)
    if config.kind == "embedded":
        from catalogs.embedded import EmbeddedCatalog

        return EmbeddedCatalog.from_config(config)
    raise ValueError(f"unknown catalog.kind {config.kind!r}; use stac_api, static or embedded")
