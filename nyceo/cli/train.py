"""``nyceo adapters train``: fit a LoRA adapter from labels on the chip grid and export the published format."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.cli.common import ConfigOpt, load_or_exit, split_names
from nyceo.cli.models import adapters_app
from nyceo.config import ConfigError, load_config


@adapters_app.command("train")
def adapters_train(
    adapter: str = typer.Option(..., "--adapter", help="Adapter to train (train.adapters.<name> + infer.adapters.<name>)."),
    months: str = typer.Option(None, "--months", help="Comma-separated YYYY-MM months (default: the recipe's)."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="Train N seeds; report the spread of test mIoU."),
    resume: bool = typer.Option(False, "--resume", help="Continue each seed's run from its last checkpoint."),
    config: Path = ConfigOpt,
) -> None:
    """Train ADAPTER on the months' stacks, export it into its folder and print the files' sha256."""
    overrides = {f"train.adapters.{adapter}.months": split_names(months)} if months else None
    try:
        cfg = load_config(config, overrides)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    from nyceo.model import WeightsError
    from nyceo.train.errors import TrainError
    from nyceo.train.run import train_adapter

    try:
        report = train_adapter(cfg, adapter, seeds=seeds, resume=resume)
    except (TrainError, WeightsError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    m = report["metrics"]
    typer.echo(f"{adapter}: exported to {report['folder']}")
    typer.echo(f"  test mIoU {m['test']['mIoU']:.3f}  IoU {m['test']['IoU']}  chips {m['splits']}")
    if seeds > 1:
        s = m["seeds"]
        typer.echo(f"  test mIoU over {seeds} seeds: mean {s['mean']:.3f} std {s['std']:.3f} {s['values']}")
    for fname, digest in report["sha256"].items():
        typer.echo(f"  sha256 {fname}: {digest}")
    typer.echo(f"# config snippet (also in {report['train_root']}/config_snippet.yaml):")
    typer.echo(report["snippet"], nl=False)


@adapters_app.command("compare")
def adapters_compare(
    a: str = typer.Argument(..., help="Adapter A (the reference)."),
    b: str = typer.Argument(..., help="Adapter B; ΔmIoU is B − A."),
    config: Path = ConfigOpt,
) -> None:
    """Compare two trained adapters on the same test split: per-class IoU, ΔmIoU and the seed spread."""
    cfg = load_or_exit(config)
    from nyceo.train.compare import compare_adapters, markdown
    from nyceo.train.errors import TrainError

    try:
        rec = compare_adapters(cfg, a, b)
    except TrainError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(markdown(rec), nl=False)
    typer.echo(f"written: {rec['folder']}/comparison.json, comparison.md")
