"""Change command: ``nyceo change --month YYYY-MM -c CONFIG``."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.cli.common import ConfigOpt, app, load_or_exit, split_names


@app.command("change")
def change_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month M, YYYY-MM (its prediction stores must be published)."),
    adapters: str = typer.Option(None, "--adapters", "-a", help="Comma-separated adapter names (default: change.adapters)."),
    force: bool = typer.Option(False, "--force", help="Rebuild pairs even when their outputs are current."),
    config: Path = ConfigOpt,
) -> None:
    """Change layers of M against M-1 and M-12 per adapter, gated by the measured noise floor."""
    import logging

    from nyceo.change.pairs import ChangeInputError
    from nyceo.change.stage import run_change

    cfg = load_or_exit(config)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        result = run_change(cfg, month, split_names(adapters), force=force)
    except (ChangeInputError, ValueError) as exc:
        typer.echo(f"change {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    for adapter, pairs in result["adapters"].items():
        for pair, rec in pairs.items():
            state = f"{rec['state']}{' (current)' if rec.get('cached') else ''}"
            px = rec.get("changed_px")
            extra = (f"{px.get('nyc') if isinstance(px, dict) else px} changed px in the city vs {rec['previous_month']}, "
                     f"thresholds {rec['thresholds_u8']}"
                     if rec["state"] == "done" else f"{rec.get('reason')}: {rec.get('detail')}")
            typer.echo(f"  {adapter} {pair}: {state} - {extra}")
    for name, p in result["persistence"].items():
        typer.echo(f"  persistence {name}: {p['pixels']}")
