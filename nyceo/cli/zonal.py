"""Analysis commands: zonal (figures + feeds + exposure), exposure (its table), report."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.cli.common import ConfigOpt, app, load_or_exit

MonthOpt = typer.Option(..., "--month", "-m", help="Month, YYYY-MM (its prediction stores must be published).")


def _run_zonal(cfg, month: str) -> dict:
    from nyceo.zonal.layers import LayerError
    from nyceo.zonal.stage import run

    try:
        return run(cfg, month)
    except (LayerError, ValueError) as exc:
        typer.echo(f"zonal {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("zonal")
def zonal_cmd(month: str = MonthOpt, config: Path = ConfigOpt) -> None:
    """Class areas per borough / NTA / configured polygon layer, heat-island and stormwater feeds, exposure."""
    cfg = load_or_exit(config)
    result = _run_zonal(cfg, month)
    if result["status"] == "skipped":
        typer.echo(f"zonal {month} skipped: {result['reason']}")
        return
    typer.echo(f"zonal {month} {result['status']} (key {result['key'][:16]}) -> {result['dir']}")
    for f in result.get("files", []):
        typer.echo(f"  {f}")
    for layer, ids in result.get("repaired_feature_ids", {}).items():
        typer.echo(f"  repaired invalid geometries in {layer}: {ids}")
    for reason in result.get("skipped", []):
        typer.echo(f"  skipped {reason}")


@app.command("exposure")
def exposure_cmd(month: str = MonthOpt, config: Path = ConfigOpt) -> None:
    """Hazard zone x borough exposure (runs the zonal stage when it is not current) and prints it."""
    from nyceo.zonal.outputs import read_table

    cfg = load_or_exit(config)
    result = _run_zonal(cfg, month)
    if result["status"] == "skipped":
        typer.echo(f"exposure {month} skipped: {result['reason']}")
        raise typer.Exit(1)
    if not cfg.zonal.hazards:
        typer.echo("no hazard layers configured (zonal.hazards)")
        return
    for spec in cfg.zonal.hazards:
        table = read_table(cfg, month, f"exposure/{spec.name}_borough.csv")
        if table is None:
            typer.echo(f"{spec.name}: no exposure table (no hazard zone intersects the boroughs)")
            continue
        cols = [c for c in ("hazard_zone", "unit_name", "adapter", "land_km2", "developed_km2", "building_km2",
                            "population") if c in table]
        typer.echo(f"{spec.name}: {spec.label}".rstrip(": "))
        typer.echo(table[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@app.command("report")
def report_cmd(month: str = MonthOpt, config: Path = ConfigOpt) -> None:
    """The month's run report: <output_root>/<YYYY-MM>/report/index.html and report.md."""
    from nyceo.report.stage import run

    cfg = load_or_exit(config)
    result = run(cfg, month)
    typer.echo(f"report {month} {result['status']} -> {result.get('html', result.get('reason', ''))}")
