"""Model commands: ``nyceo adapters`` (list, verify, make-demo) and ``nyceo weights fetch``."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from nyceo.cli.common import ConfigOpt, app, load_or_exit


adapters_app = typer.Typer(help="TerraMind LoRA adapters: list, check, make the demo ones.", no_args_is_help=True)
weights_app = typer.Typer(help="Model weights: fetch the pinned base and adapters.", no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
app.add_typer(weights_app, name="weights")


@adapters_app.command("list")
def adapters_list(config: Path = ConfigOpt) -> None:
    """Print the adapter registry: name, backbone, classes, source."""
    cfg = load_or_exit(config)
    for name, ad in cfg.infer.adapters.items():
        typer.echo(f"{name:<14} {ad.backbone:<24} {len(ad.classes)} classes {ad.classes}  <- {ad.source}")


@adapters_app.command("make-demo")
def adapters_make_demo(config: Path = ConfigOpt) -> None:
    """Write the seeded, untrained demo adapters the config names (published format) and print their sha256."""
    from nyceo.model import AdapterError, make_demo_adapter

    cfg = load_or_exit(config)
    demo = [n for n, ad in cfg.infer.adapters.items() if ad.demo_seed is not None]
    if not demo:
        typer.echo(f"{config} names no demo adapter (an adapter with demo_seed and a local folder)", err=True)
        raise typer.Exit(2)
    for name in demo:
        try:
            hashes = make_demo_adapter(name, cfg)
        except AdapterError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        typer.echo(f"{name}: written (untrained)")
        for fname, digest in hashes.items():
            typer.echo(f"  {fname}: {digest}")


@adapters_app.command("verify")
def adapters_verify(config: Path = ConfigOpt) -> None:
    """Load the base(s) and every adapter and run all checks (hashes, tensors, classes); no inference."""
    import json

    from nyceo.model import AdapterRunner, WeightsError

    cfg = load_or_exit(config)
    runner = AdapterRunner(cfg, device="cpu")
    try:
        runner.load()
    except WeightsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for name in runner.adapter_names:
        typer.echo(json.dumps(runner.provenance(name), default=str))


@weights_app.command("fetch")
def weights_fetch(
    config: Path = ConfigOpt,
    revision: str = typer.Option(None, "--revision", help="Fetch the adapters at this branch, tag or commit "
                                 "instead of the configured revision (the base keeps its own)."),
    pins_file: Path = typer.Option(None, "--pins-file", help="Where to write the pins (default: "
                                   "<config stem>.pins.yaml beside the config, which load_config applies)."),
) -> None:
    """Resolve every hub source to a commit, download and verify each file against the hub's LFS sha256,
    and write the pins (commit + sha256 per file) to the config's pin file."""
    from nyceo.config import ConfigError, load_config
    from nyceo.model.hub import fetch_pins, write_pin_file
    from nyceo.model.weights import WeightsError

    try:
        cfg = load_config(config, pins=False)  # the configured sources, not the previous pins
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    try:
        pins = fetch_pins(cfg, revision)
    except WeightsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not pins:
        typer.echo(f"{config} names no hf:// source (base or adapter): nothing to fetch, no pin file written")
        return
    target = write_pin_file(config, pins, pins_file)
    typer.echo(yaml.safe_dump(pins, sort_keys=False), nl=False)
    typer.echo(f"# verified against the hub and pinned in {target}"
               + ("" if pins_file else f" (applied whenever {config} is loaded)"))
