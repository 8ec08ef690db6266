"""``nyceo config``: inspect the resolved configuration."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from nyceo.cli.common import ConfigOpt, app, load_or_exit

config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(config: Path = ConfigOpt) -> None:
    """Print the resolved configuration (defaults filled in) and its hash."""
    cfg = load_or_exit(config)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), nl=False)
    typer.echo(f"# config_hash: {cfg.config_hash()}")


