"""Zonal figures (exact fractional coverage, cached), heat-island and stormwater feeds, exposure overlays.

Entry points: :func:`nyceo.zonal.stage.run` (the stage), :mod:`nyceo.zonal.contract` (STAGE).
"""
