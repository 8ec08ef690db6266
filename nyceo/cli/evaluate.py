"""`nyceo evaluate`: a month's maps against the configured references."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.cli.common import ConfigOpt, app, load_or_exit, split_names


@app.command("evaluate")
def evaluate_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month to evaluate, YYYY-MM (its pred stores must be published)."),
    adapter: str = typer.Option(None, "--adapter", "-a", help="Comma-separated adapter names (default: every evaluated one)."),
    reference: str = typer.Option(None, "--reference", "-r", help="Comma-separated reference names (default: all)."),
    force: bool = typer.Option(False, "--force", help="Re-evaluate pairs whose outputs are current."),
    config: Path = ConfigOpt,
) -> None:
    """Accuracy against reference maps (metrics, area-weighted CIs, sweep, probes, per-chip diagnostics)."""
    from nyceo.evaluate.contract import S, run_evaluate
    from nyceo.evaluate.reference import EvaluateError

    cfg = load_or_exit(config)
    try:
        result = run_evaluate(cfg, month, split_names(adapter), split_names(reference), force=force)
    except (EvaluateError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"evaluate {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    if result["status"] == "skipped":
        typer.echo(f"evaluate {month} skipped: {result['reason']}")
        return
    for r in result["results"]:
        if r["state"] == "blocked":
            typer.echo(f"  {r['adapter']} vs {r['reference']}: blocked: {r['reason']}")
            continue
        miou = "—" if r["miou"] is None else f"{r['miou']:.3f}"
        oa = "—" if r["overall_accuracy"] is None else f"{r['overall_accuracy']:.3f}"
        extra = "".join(f", {k} {r[k]}" for k in ("probes_passed", "suggested_threshold") if k in r)
        typer.echo(f"  {r['adapter']} vs {r['reference']}: {r['state']}: mIoU {miou} over {r['miou_classes']} "
                   f"classes, OA {oa}, {r['evaluated_px']} px{extra} -> "
                   f"{S.eval_dir(cfg, month, r['adapter'], r['reference'])}")
