"""Prefect flows."""

import logging
import os

# Stage modules log through the standard logging module ("nyceo.*", "catalogs.*"); have Prefect
# forward those records to the flow-run logs (per-stage progress) unless the operator chose otherwise.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "nyceo,catalogs")
for _name in ("nyceo", "catalogs"):
    if logging.getLogger(_name).level == logging.NOTSET:  # Prefect's root logger is at WARNING
        logging.getLogger(_name).setLevel(logging.INFO)
