"""The ``nyceo`` command line: one Typer app, one module per command group.

Each command is a thin shell over a stage function in ``nyceo/``. A new command group is a new
module here that defines its commands on :data:`app` (or its own sub-app) and one import below.
"""

from __future__ import annotations


from nyceo.cli.common import app

# Command groups: importing a module registers its commands on ``app``.
from nyceo.cli import change, config_cmd, evaluate, models, stages, train, zonal  # noqa: E402,F401


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["app", "main"]
