"""Stage commands: grid, acquire, infer, mosaic, run, backfill, status."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.cli.common import (ConfigOpt, app, check_memory_or_exit, exit_if_disk_full, load_or_exit, nullcontext,
                              split_names)
from nyceo.memory import flow_workers


def check_args_or_exit(cfg, *months: str) -> None:
    """Months and output roots checked before anything starts: one line on stderr, exit status 2."""
    from nyceo.paths import check_output_root, check_processable_month

    try:
        for month in months:
            check_processable_month(month)
        check_output_root(cfg)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("grid")
def grid_cmd(config: Path = ConfigOpt) -> None:
    """Build the chip grid over the configured boroughs and write its GeoParquet index."""
    cfg = load_or_exit(config)
    check_args_or_exit(cfg)

    from nyceo.grid import counts_per_borough
    from nyceo.grid_stage import read_grid, write_grid
    try:
        dest = write_grid(cfg)
    except ValueError as exc:
        typer.echo(f"grid failed: {exc}", err=True)
        raise typer.Exit(1) from None
    chips = read_grid(dest)
    typer.echo(f"{len(chips)} chips of {cfg.grid.chip_size_px} px at {cfg.grid.resolution_m:g} m -> {dest}")
    for name, n in counts_per_borough(chips).items():
        typer.echo(f"  {name:<14} {n:5d}")


@app.command("acquire")
def acquire_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month to acquire, YYYY-MM."),
    config: Path = ConfigOpt,
    parallel: bool = typer.Option(
        False, "--parallel/--serial", help="Run blocks on dask worker processes (dask section of the config)."
    ),
    rebuild_blocks: str = typer.Option(
        None, "--rebuild-blocks", help="Comma-separated block ids (e.g. b027_033) to re-acquire: for a damaged "
        "chunk named by an error, or 'damaged' for every block whose chunk files are missing or changed."),
) -> None:
    """Find the month's scenes and write its 4-timestep stack (stack.zarr) on the chip grid."""
    from contextlib import nullcontext

    cfg = load_or_exit(config)
    check_args_or_exit(cfg, month)
    check_memory_or_exit(cfg, ["acquire"], flow_workers(cfg) if parallel and not cfg.dask.scheduler_address else 1)

    from nyceo.acquire import AcquireError, run_acquire
    from nyceo.acquire.contract import damaged_blocks, invalidate_blocks
    from nyceo.locks import LockedError, stage_lock

    if rebuild_blocks:
        names = sorted(damaged_blocks(cfg, month)) if rebuild_blocks == "damaged" else split_names(rebuild_blocks)
        try:
            if names:
                invalidate_blocks(cfg, month, names)
        except ValueError as exc:
            typer.echo(f"acquire {month}: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"re-acquiring block(s) {names or 'none (no damaged block found)'}")

    def show(rec: dict) -> None:
        state = "resumed" if rec.get("resumed") else rec["status"]
        extra = f"S2 {','.join(rec['s2_dates'])}" if rec["status"] == "done" else rec.get("detail", "")
        typer.echo(f"  block {rec['block_id']}: {state} ({rec.get('chips', '?')} chips) {extra}")

    if parallel:
        from nyceo.cluster import dask_client

        ctx = dask_client(cfg.dask)
    else:
        ctx = nullcontext(None)
    try:
        with stage_lock(cfg, month, "acquire"), ctx as client:
            result = run_acquire(cfg, month, client=client, progress=show)
    except (AcquireError, ValueError, LockedError) as exc:
        typer.echo(f"acquire {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        exit_if_disk_full(exc, f"acquire {month}", cfg.run.output_root)
    if result["status"] == "skipped":
        typer.echo(f"{month} skipped: {result['reason']}: {result['detail']}")
    elif result.get("already_published"):
        typer.echo(f"{month} up to date -> {result['store']}")
    else:
        typer.echo(f"{month} done: {result['blocks_done']} block(s) written, {result['blocks_skipped']} skipped, "
                   f"{result['blocks_resumed']} already finished -> {result['store']}")


def _weights_errors() -> tuple[type[Exception], ...]:
    """WeightsError (adapter/base files: hash, tensors, classes, missing) once the model code is loaded.

    Evaluated when an exception is matched, so the CLI imports no torch just to name the class."""
    import sys

    mod = sys.modules.get("nyceo.model.weights")
    return (mod.WeightsError,) if mod else ()


@app.command("infer")
def infer_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month to predict, YYYY-MM (its stack.zarr must exist)."),
    adapters: str = typer.Option(None, "--adapters", "-a", help="Comma-separated adapter names (default: all)."),
    config: Path = ConfigOpt,
) -> None:
    """Tiled TerraMind inference of the month's stack with every (or the named) adapter."""
    import logging

    cfg = load_or_exit(config)
    check_args_or_exit(cfg, month)
    check_memory_or_exit(cfg, ["infer"])

    from nyceo.infer import run_infer
    from nyceo.infer.store import StackStoreError
    from nyceo.locks import LockedError, stage_lock

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = split_names(adapters)
    try:
        with stage_lock(cfg, month, "infer"):
            out = run_infer(cfg, month, names)
    except (StackStoreError, ValueError, KeyError, LockedError, *_weights_errors()) as exc:
        typer.echo(f"infer {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        exit_if_disk_full(exc, f"infer {month}", cfg.run.output_root)
    for name, path in out.items():
        typer.echo(f"  {name:<14} -> {path}")


@app.command("mosaic")
def mosaic_cmd(
    month: str = typer.Option(..., "--month", "-m", help="Month to mosaic, YYYY-MM (its pred/<adapter>.zarr must exist)."),
    adapters: str = typer.Option(None, "--adapters", "-a", help="Comma-separated adapter names (default: all)."),
    config: Path = ConfigOpt,
) -> None:
    """Borough and city COGs, quicklooks and the STAC catalog of a month's predictions."""
    cfg = load_or_exit(config)
    check_args_or_exit(cfg, month)

    from nyceo.locks import LockedError, stage_lock
    from nyceo.mosaic.predstore import PredStoreError
    from nyceo.mosaic.stac import update_catalog
    from nyceo.mosaic.stage import mosaic_month

    names = split_names(adapters)
    try:
        with stage_lock(cfg, month, "mosaic"):
            results = mosaic_month(cfg, month, names)
            catalog = update_catalog(cfg, month, names)
    except (PredStoreError, ValueError, KeyError, LockedError) as exc:
        typer.echo(f"mosaic {month} failed: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        exit_if_disk_full(exc, f"mosaic {month}", cfg.mosaic.output_root or cfg.run.output_root)
    for r in results:
        typer.echo(f"  {r.adapter:<14} {r.area:<14} {'up to date' if r.skipped else 'written'}  {r.files['class']}")
    typer.echo(f"catalog -> {catalog}")


@app.command("run")
def run_cmd(
    month: str = typer.Option(None, "--month", "-m", help="Month to process, YYYY-MM (default: previous month, New York time)."),
    config: Path = ConfigOpt,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Per-stage progress bars on stderr."),
    brief: bool = typer.Option(False, "--brief", help="One line per stage instead of the whole JSON summary."),
) -> None:
    """Run the monthly flow (every stage) for one month on the Prefect engine; print its summary."""
    import json

    from nyceo.status import previous_month

    cfg = load_or_exit(config)
    month = month or previous_month()
    check_args_or_exit(cfg, month)   # before Prefect starts a server (tens of seconds)
    # acquire on this machine's dask workers unless a cluster is named; infer in this process
    check_memory_or_exit(cfg, ["infer"] if cfg.dask.scheduler_address else ["acquire", "infer"], flow_workers(cfg))

    from flows.monthly import monthly_run
    from nyceo.cli.prefect_server import PrefectServerError, temporary_prefect_server
    from nyceo.progress import progress_bars

    # the temporary Prefect server dies with this command, even on SIGKILL (no orphan server)
    try:
        with temporary_prefect_server(), (progress_bars(cfg, month) if progress else nullcontext()):
            state = monthly_run(month=month, config_path=str(config), return_state=True)
            summary = state.result() if state.is_completed() else None
    except PrefectServerError as exc:
        typer.echo(f"month {month} not started: {exc}", err=True)
        raise typer.Exit(1) from None
    if not state.is_completed():
        typer.echo(f"month {month} failed: {state.message}", err=True)
        raise typer.Exit(1)
    if not brief:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"month {month}: {summary['status']} in {summary['elapsed_s']:.0f} s -> {summary['summary_path']}")
    for name, rec in summary["stages"].items():
        extra = "reused" if rec.get("cached") else rec.get("reason", "")
        typer.echo(f"  {name:<9} {rec['status']:<14} {rec.get('elapsed_s', 0):7.1f} s  {extra}")


@app.command("backfill")
def backfill_cmd(
    start: str = typer.Option(..., "--start", help="First month, YYYY-MM."),
    end: str = typer.Option(..., "--end", help="Last month, YYYY-MM (inclusive)."),
    config: Path = ConfigOpt,
    max_concurrent: int = typer.Option(2, "--max-concurrent", "-j", help="Months processed at once."),
) -> None:
    """Process every month from --start to --end; months already finished are skipped."""
    from nyceo.status import month_range

    cfg = load_or_exit(config)
    check_args_or_exit(cfg, start, end)
    try:
        month_range(start, end)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    from flows.backfill import backfill, format_table
    from nyceo.cli.prefect_server import temporary_prefect_server

    with temporary_prefect_server():   # dies with this command, even on SIGKILL
        result = backfill(start=start, end=end, config_path=str(config), max_concurrent=max_concurrent)
    typer.echo(format_table(result["months"]))
    if any(r["status"] == "failed" for r in result["months"]):
        raise typer.Exit(1)


@app.command("status")
def status_cmd(config: Path = ConfigOpt) -> None:
    """Per month and stage: current / stale (rebuild in progress) / partial / missing / skipped / blocked."""
    from nyceo import contract
    from nyceo.status import status_table

    cfg = load_or_exit(config)
    rows = status_table(cfg)
    if not rows:
        typer.echo(f"no months under {cfg.run.output_root}")
        return
    names = [s.name for s in contract.stages() if s.per_month]
    typer.echo(f"{'month':<8} " + " ".join(f"{n:<16}" for n in names) + " last run")
    for r in rows:
        cells = [r["stages"][n].describe() if n in r["stages"] else "-" for n in names]
        typer.echo(f"{r['month']:<8} " + " ".join(f"{c:<16}" for c in cells) + f" {r['last_run']}")
        for n in names:
            st = r["stages"].get(n)
            if st and st.state not in ("current", "missing") and st.reason:
                typer.echo(f"         {n}: {st.reason}")
        if r["reason"]:
            typer.echo(f"         last run failed: {r['reason']}")
