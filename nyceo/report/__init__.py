"""The monthly run report (HTML + Markdown): pictures first, then the zonal tables. Stage: ``report``."""
