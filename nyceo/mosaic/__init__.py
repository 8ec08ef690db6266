"""Mosaic stage: prediction stores -> clipped Cloud-Optimized GeoTIFFs, quicklooks, STAC catalog.

Plain typed functions, no Prefect: ``stage.mosaic_area`` (one adapter x area),
``stage.mosaic_month`` (all of a month) and ``stac.update_catalog``.
"""
