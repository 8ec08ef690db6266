"""Catalog sources (STAC API, static catalog, embedded offline city) and vendored reference data."""
