"""Writing one pair's evaluation: metrics.json/.md, confusion PNG, sweep PNG/CSV, probes CSV, chips.parquet.

Every file goes through ``nyceo.io`` atomic writes (temporary name, then rename / upload), and
``metrics.json`` — the file whose ``key`` the stage's status compares — is written last.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nyceo.io import join, upload_file_atomic, write_bytes_atomic, write_json_atomic

FILES = ("metrics.json", "metrics.md", "confusion.png", "chips.parquet", "probes.csv", "sweep.csv", "sweep.png")


def _fmt(v: Any, nd: int = 3) -> str:
    return "—" if v is None else f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue().encode()


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def confusion_png(cm: np.ndarray, classes: list[str], title: str) -> bytes:
    """Counts and row-normalized (recall per reference class) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = cm / cm.sum(axis=1, keepdims=True)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.6 * len(classes), 2 + 0.8 * len(classes)))
    for ax, data, sub, fmt in ((axes[0], cm, "pixels", "{:.0f}"), (axes[1], norm, "row-normalized", "{:.2f}")):
        ax.imshow(np.nan_to_num(data), cmap="Blues")
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("map")
        ax.set_ylabel("reference")
        ax.set_title(sub)
        for (i, j), v in np.ndenumerate(data):
            ax.text(j, i, "—" if np.isnan(v) else fmt.format(v), ha="center", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def sweep_png(rows: list[dict[str, Any]], title: str, configured: dict[str, float]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    t = [r["threshold"] for r in rows]
    for key in ("iou", "precision", "recall", "f1"):
        ax.plot(t, [np.nan if r[key] is None else r[key] for r in rows], marker=".", label=key)
    for name, thr in configured.items():
        ax.axvline(thr, color="grey", ls="--", lw=0.8)
        ax.text(thr, 0.02, name, rotation=90, fontsize=7, color="grey")
    ax.set_xlabel("probability threshold")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def chips_parquet(rows: list[dict[str, Any]], chips: Any, dest: str, provenance: dict[str, Any]) -> None:
    import json

    import geopandas as gpd
    import pandas as pd

    df = pd.DataFrame(rows)
    geo = chips.set_index("chip_id").geometry
    gdf = gpd.GeoDataFrame(df, geometry=list(geo.loc[df["chip_id"]].values), crs=chips.crs)
    gdf.attrs["nyceo_provenance"] = json.dumps(provenance, sort_keys=True)
    with tempfile.TemporaryDirectory(prefix="nyceo-eval-") as work:
        tmp = Path(work) / "chips.parquet"
        gdf.to_parquet(tmp, schema_version="1.1.0", compression="zstd")
        upload_file_atomic(tmp, dest)


def markdown(doc: dict[str, Any]) -> str:
    """A short human-readable summary of metrics.json."""
    city, classes = doc["city"], doc["classes"]
    lines = [f"# Evaluation of {doc['adapter']} against {doc['reference']['name']} — {doc['month']}", "",
             f"Agreement with the reference ({doc['reference']['identity'].get('kind')}), not truth. "
             f"Key `{doc['key'][:16]}`, pred key `{doc['pred_key'][:16]}`.", "",
             f"- mIoU {_fmt(city['miou'])} over {city['miou_classes']} class(es) {city['miou_over']}; "
             f"overall accuracy {_fmt(city['overall_accuracy'])}",
             f"- evaluated {city['evaluated_px']} px; map nodata {city['map_nodata_px']} px; reference nodata "
             f"{city['reference_nodata_px']} px", "", "| class | IoU | precision (UA) | recall (PA) | F1 | ref px | map px | absent |",
             "|---|---|---|---|---|---|---|---|"]
    for c in classes:
        v = city["classes"][c]
        lines.append(f"| {c} | {_fmt(v['iou'])} | {_fmt(v['precision'])} | {_fmt(v['recall'])} | {_fmt(v['f1'])} "
                     f"| {v['reference_px']} | {v['map_px']} | {v['absent'] or ''} |")
    ae = doc["area_estimate"]
    lines += ["", f"## Area-weighted estimate ({ae['method']}; {ae['confidence']:.0%} CI)", "",
              f"Overall accuracy {_fmt(ae['overall_accuracy'])} ± {_fmt(ae['overall_accuracy_ci'])}", "",
              "| class | UA ± | PA ± | mapped km² | adjusted km² ± |", "|---|---|---|---|---|"]
    for i, c in enumerate(classes):
        lines.append(f"| {c} | {_fmt(ae['users_accuracy'][i])} ± {_fmt(ae['users_accuracy_ci'][i])} | "
                     f"{_fmt(ae['producers_accuracy'][i])} ± {_fmt(ae['producers_accuracy_ci'][i])} | "
                     f"{_fmt(ae['mapped_area'][i], 2)} | {_fmt(ae['adjusted_area'][i], 2)} ± {_fmt(ae['adjusted_area_ci'][i], 2)} |")
    lines += ["", "## Boroughs", "", "| borough | mIoU | OA | px |", "|---|---|---|---|"]
    lines += [f"| {n} | {_fmt(b['miou'])} | {_fmt(b['overall_accuracy'])} | {b['evaluated_px']} |"
              for n, b in doc["boroughs"].items()]
    if "sweep" in doc:
        s = doc["sweep"]["suggested_operating_point"]
        lines += ["", f"## Threshold sweep ({doc['sweep']['class']})", "",
                  f"Suggested operating point (best IoU, NOT applied): {s and s['threshold']} (IoU {_fmt(s and s['iou'])}); "
                  f"configured: {doc['sweep']['configured_operating_points']}"]
    if doc["probes"]:
        lines += ["", "## Probes", "", "| probe | state | share | rule | reference share |", "|---|---|---|---|---|"]
        lines += [f"| {p['probe']} | {p['state']} | {_fmt(p['share'])} | {p['classes']} "
                  f"{'≥ ' + _fmt(p['min_share'], 2) if p['min_share'] is not None else ''}"
                  f"{' ≤ ' + _fmt(p['max_share'], 2) if p['max_share'] is not None else ''} | {_fmt(p['reference_share'])} |"
                  for p in doc["probes"]]
    return "\n".join(lines) + "\n"


def output_names(doc: dict[str, Any]) -> list[str]:
    """The files :func:`write_all` writes for a pair with metrics ``doc`` (besides metrics.json)."""
    return ["confusion.png", "probes.csv", *(["sweep.csv", "sweep.png"] if "sweep" in doc else []),
            "chips.parquet", "metrics.md"]


def write_all(out_dir: str, doc: dict[str, Any], chip_rows: list[dict[str, Any]], chips: Any) -> list[str]:
    """Write every output of one pair; metrics.json last. Returns the paths written."""
    written = []

    def put(name: str, data: bytes) -> None:
        write_bytes_atomic(join(out_dir, name), data)
        written.append(join(out_dir, name))

    title = f"{doc['adapter']} vs {doc['reference']['name']} — {doc['month']}"
    put("confusion.png", confusion_png(np.array(doc["city"]["confusion"]), doc["classes"], title))
    put("probes.csv", _csv(doc["probes"]))
    if "sweep" in doc:
        put("sweep.csv", _csv(doc["sweep"]["rows"]))
        put("sweep.png", sweep_png(doc["sweep"]["rows"], title, doc["sweep"]["configured_operating_points"]))
    chips_parquet(chip_rows, chips, join(out_dir, "chips.parquet"), doc["provenance"])
    written.append(join(out_dir, "chips.parquet"))
    put("metrics.md", markdown(doc).encode())
    write_json_atomic(join(out_dir, "metrics.json"), doc)
    written.append(join(out_dir, "metrics.json"))
    return written
