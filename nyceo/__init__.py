"""nyceo: city-wide New York maps from Sentinel-1/2 and TerraMind, as a Prefect pipeline."""

__version__ = "0.1.0"
