"""The output layout, in one place. Every stage asks here where to read and write."""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from pathlib import Path

from nyceo.config import PipelineConfig
from nyceo.io import is_remote, join

MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    if not MONTH_RE.match(month):
        raise ValueError(f"month '{month}' is not YYYY-MM (e.g. 2024-07)")
    return month


def grid_index(config: PipelineConfig) -> str:
    """GeoParquet chip index (not month-specific: the lattice is fixed)."""
    return join(config.run.output_root, "grid", "chips.parquet")


def month_dir(config: PipelineConfig, month: str) -> str:
    return join(config.run.output_root, check_month(month))


def stack_store(config: PipelineConfig, month: str) -> str:
    """Zarr v3 input stack of a month (S2, S1, DEM, validity) on the chip grid."""
    return join(month_dir(config, month), "stack.zarr")


def pred_store(config: PipelineConfig, month: str, adapter: str) -> str:
    """Zarr v3 prediction store of one adapter for a month."""
    return join(month_dir(config, month), "pred", f"{adapter}.zarr")


def area_slug(name: str) -> str:
    """'Staten Island' -> 'staten_island'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# The first month of Sentinel-2 L2A over New York on Microsoft Planetary Computer: its
# sentinel-2-l2a collection is "the global Sentinel-2 archive, from 2016 to the present, processed
# to L2A", and holds tile 18TWL from November 2016 on (Sentinel-2A itself flies since 2015-06-23).
# Every stage needs Sentinel-2 L2A, so no earlier month can be processed. The embedded catalog
# follows the same date (catalogs/embedded/missions.py; a test keeps the two equal).
FIRST_DATA_MONTH = "2016-11"


def current_month_utc(today: dt.date | None = None) -> str:
    """'YYYY-MM' of ``today`` (default: now, UTC)."""
    today = today or dt.datetime.now(dt.timezone.utc).date()
    return f"{today.year:04d}-{today.month:02d}"


def check_processable_month(month: str, today: dt.date | None = None) -> str:
    """``month`` if the pipeline can process it, else a ``ValueError`` saying which months can be.

    Refuses a malformed month, a future month (after the current month in UTC: no scene exists
    yet) and a month before Sentinel-2 L2A exists over the city (``FIRST_DATA_MONTH``). The current
    month is allowed (a partial month). One function for every entry point (CLI, flows)."""
    check_month(month)
    now = current_month_utc(today)
    span = f"months with data are {FIRST_DATA_MONTH} to {now} (the current month, UTC)"
    if month > now:
        raise ValueError(f"month {month} is in the future: no scene exists yet; {span}")
    if month < FIRST_DATA_MONTH:
        raise ValueError(f"month {month} is before Sentinel-2 L2A imagery of New York exists "
                         f"(Planetary Computer holds it from {FIRST_DATA_MONTH}); {span}")
    return month


def _check_local_root(setting: str, root: str) -> None:
    fix = f"set {setting} to a folder this user can write (or remove what is in the way)"
    path = Path(root)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = "is" if blocker == path else f"lies under {blocker}, which is"
        raise ValueError(f"{setting} '{root}' {what} a file, not a folder; {fix}")
    probe = path / f".nyceo-write-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"{setting} '{root}' is not a writable folder ({exc.strerror or exc}); {fix}") from None


def check_output_root(config: PipelineConfig) -> None:
    """Fail early, naming the setting, when a local output root is not a writable folder.

    Checks ``run.output_root`` and, when set, ``mosaic.output_root``: each must be a folder (it is
    created if missing) in which a file can be created. URLs (s3://…) are not probed here."""
    roots = [("run.output_root", config.run.output_root), ("mosaic.output_root", config.mosaic.output_root)]
    for setting, root in roots:
        if root and not is_remote(root):
            _check_local_root(setting, str(root).removeprefix("file://"))
