"""Share intervals from the evaluate stage's error matrix (Olofsson et al. 2014, stratified by map class).

Reads the evaluate stage's ``<output_root>/<YYYY-MM>/eval/<adapter>/<reference>/metrics.json`` (the
first reference in name order; ``eval/<adapter>/metrics.json`` is also accepted) when it exists.
Fields looked for, in order (the reader is tolerant; anything else is ignored):

- ``classes``: class names in matrix order (also accepted inside ``area_estimate``);
- the error matrix in **counts**: ``area_estimate.error_matrix_counts``, ``area_estimate.confusion_matrix``,
  ``confusion_matrix``, ``error_matrix`` or ``city.confusion`` (what the evaluate stage writes: the
  city-wide pixel confusion matrix, scikit-learn orientation); list of lists;
- its orientation: ``area_estimate.rows`` / ``confusion_matrix_rows`` = ``"map"`` (rows are map
  classes) or ``"reference"`` (rows are reference classes: the scikit-learn / torchmetrics
  convention, the default when nothing says otherwise).

For a zone whose mapped class shares are ``W_i``, the error-adjusted share of class ``j`` is
``p_j = sum_i W_i n_ij / n_i.`` with standard error ``sqrt(sum_i W_i^2 q_ij (1 - q_ij) / (n_i. - 1))``,
``q_ij = n_ij / n_i.`` (Olofsson et al. 2014, eqs. 9-10, with the zone's own map proportions as
stratum weights: the city-wide error matrix is assumed to hold inside each zone - say so when
publishing). The interval is ``p_j +/- z * SE``, clipped to [0, 1].
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from nyceo.config import PipelineConfig
from nyceo.io import join
from nyceo.paths import month_dir
from nyceo.zonal import remote

log = logging.getLogger("nyceo.zonal")


@dataclass(frozen=True)
class ErrorMatrix:
    """Sample counts with rows = map class, columns = reference class."""

    classes: tuple[str, ...]
    counts: np.ndarray  # (k, k) float
    source: str


def metrics_path(config: PipelineConfig, month: str, adapter: str) -> str:
    """The evaluation file read for ``adapter`` (it may not exist); local path or URL."""
    root = join(month_dir(config, month), "eval", adapter)
    direct = join(root, "metrics.json")
    if remote.is_file(direct):
        return direct
    found = [u for u in remote.find(root, ("/metrics.json",)) if remote.relative(u, root).count("/") == 1]
    return found[0] if found else direct


def _first(d: dict, *names: str):
    for n in names:
        if isinstance(d, dict) and d.get(n) is not None:
            return d[n]
    return None


def parse_error_matrix(metrics: dict, source: str) -> ErrorMatrix | None:
    """The error matrix (rows = map) from an evaluation ``metrics.json``, or None when absent/unusable."""
    area = metrics.get("area_estimate") if isinstance(metrics.get("area_estimate"), dict) else {}
    city = metrics.get("city") if isinstance(metrics.get("city"), dict) else {}
    matrix = (_first(area, "error_matrix_counts", "confusion_matrix") or _first(metrics, "confusion_matrix", "error_matrix")
              or _first(city, "confusion"))
    classes = _first(area, "classes") or _first(metrics, "classes")
    if matrix is None or classes is None:
        return None
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape != (len(classes), len(classes)):
        log.warning("%s: error matrix shape %s does not match %d classes; intervals omitted",
                    source, counts.shape, len(classes))
        return None
    rows = _first(area, "rows") or _first(metrics, "confusion_matrix_rows") or "reference"
    if rows not in ("map", "reference"):
        log.warning("%s: matrix orientation '%s' is neither 'map' nor 'reference'; intervals omitted", source, rows)
        return None
    return ErrorMatrix(tuple(str(c) for c in classes), counts if rows == "map" else counts.T, source)


def read_error_matrix(config: PipelineConfig, month: str, adapter: str) -> ErrorMatrix | None:
    path = metrics_path(config, month, adapter)
    try:
        data = remote.read_bytes_or_none(path)
        metrics = json.loads(data) if data is not None else None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("evaluation %s unreadable (%s); share intervals omitted", path, exc)
        return None
    return parse_error_matrix(metrics, path) if metrics is not None else None


def adjusted_shares(em: ErrorMatrix, map_shares: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Error-adjusted shares and their interval for zones with mapped shares ``map_shares`` (zones, k).

    Returns (estimate, low, high), each (zones, k). Map classes never sampled (row sum 0) contribute
    their mapped share to their own class with zero variance (no information to adjust them).
    """
    n = em.counts
    row = n.sum(axis=1, keepdims=True)
    k = n.shape[0]
    q = np.where(row > 0, n / np.where(row > 0, row, 1), np.eye(k))
    w = np.nan_to_num(np.asarray(map_shares, dtype=np.float64))
    est = w @ q
    denom = np.where(row > 1, row - 1, np.inf)
    var = (w**2) @ (q * (1 - q) / denom)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    se = np.sqrt(var)
    return est, np.clip(est - z * se, 0, 1), np.clip(est + z * se, 0, 1)
