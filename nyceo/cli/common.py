"""What every command module shares: the Typer app, the config option, config loading."""

from __future__ import annotations

from pathlib import Path

import typer

from nyceo.config import ConfigError, PipelineConfig, load_config

app = typer.Typer(help="City-wide New York maps from Sentinel-1/2 and TerraMind.", no_args_is_help=True)

ConfigOpt = typer.Option(Path("configs/demo.yaml"), "--config", "-c", help="Configuration YAML file.")


def load_or_exit(path: Path) -> PipelineConfig:
    """Load a configuration, or print the error and exit with status 2."""
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


def disk_full(exc: BaseException) -> bool:
    """An OSError that says the filesystem is full (ENOSPC) or over quota (EDQUOT)."""
    import errno

    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def exit_if_disk_full(exc: BaseException, what: str, output_root: str) -> None:
    """Turn a full disk into one line naming the file and the fix (exit 1); re-raise anything else."""
    if not disk_full(exc):
        raise exc
    where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
    typer.echo(f"{what} failed: no space left on the device{where} (run.output_root {output_root}). Free space "
               "there or set run.output_root to a larger filesystem, then run the same command again: finished "
               "work is kept and published outputs are untouched.", err=True)
    raise typer.Exit(1) from None


def check_memory_or_exit(cfg: PipelineConfig, stages: list[str], workers: int = 1) -> None:
    """Refuse, before anything starts, a configuration whose estimated peak memory does not fit (exit 2)."""
    from nyceo.memory import check_memory

    try:
        check_memory(cfg, stages, workers)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def split_names(csv: str | None) -> list[str] | None:
    """'a, b' -> ['a', 'b']; None or empty -> None (meaning: all)."""
    names = [n.strip() for n in (csv or "").split(",") if n.strip()]
    return names or None




def nullcontext():
    from contextlib import nullcontext as _nc

    return _nc()
