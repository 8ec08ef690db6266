"""The ``nyceo`` command line. Each command is a thin shell over a stage function."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml

from nyceo.config import ConfigError, PipelineConfig, load_config

app = typer.Typer(help="City-wide New York maps from Sentinel-1/2 and TerraMind.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOpt = typer.Option(Path("configs/demo.yaml"), "--config", "-c", help="Configuration YAML file.")


def load_or_exit(path: Path) -> PipelineConfig:
    """Load a configuration, or print the error and exit with status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@config_app.command("show")
def config_show(config: Path = ConfigOpt) -> None:
    """Print the resolved configuration (defaults filled in) and its hash."""
    cfg = load_or_exit(config)
    typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), nl=False)
    typer.echo(f"# config_hash: {cfg.config_hash()}")


@app.command("grid")
def grid_cmd(config: Path = ConfigOpt) -> None:
    """Build the chip grid over the configured boroughs and write its GeoParquet index."""
    from nyceo.grid import counts_per_borough
    from nyceo.grid_stage import read_grid, write_grid

    cfg = load_or_exit(config)
    dest = write_grid(cfg)
    chips = read_grid(dest)
    typer.echo(f"{len(chips)} chips of {cfg.grid.chip_size_px} px at {cfg.grid.resolution_m:g} m -> {dest}")
    for name, n in counts_per_borough(chips).items():
        typer.echo(f"  {name:<14} {n:5d}")


@app.command("run")
def run_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month to process, YYYY-MM."),
    config: Path = ConfigOpt,
) -> None:
    """Run the monthly flow (every stage) for one month on the Prefect engine."""
    import json

    from flows.monthly import monthly_run

    load_or_exit(config)
    summary = monthly_run(month=month, config_path=str(config))
    typer.echo(json.dumps(summary, indent=2, default=str))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
