"""Prefect flows."""

import os

# Stage modules log through the standard logging module ("nyceo.*", "catalogs.*"); have Prefect
# forward those records to the flow-run logs (per-stage progress) unless the operator chose otherwise.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nyceo,catalogs")
