"""The report stage: ``<output_root>/<YYYY-MM>/report/index.html`` + ``report.md`` + ``img/``.

Key: digest of the keys (or sha256) of everything it shows — the zonal key of the month and of the
earlier months in its time series, the prediction keys, the quicklooks, change and evaluation files —
the report settings and the code version. Built in ``report@<key16>`` and published (pointer +
symlink) when complete, like every versioned output. Self-contained: images beside the HTML in
``img/`` (or embedded as data URIs with ``report.embed_images``), no network, no script.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from nyceo import __version__, paths, versioned
from nyceo.config import PipelineConfig
from nyceo.contract import Status, published_status
from nyceo.io import is_remote, join, missing_files, upload_file_atomic, write_bytes_atomic, write_json_atomic
from nyceo.keys import CODE_VERSIONS, digest
from nyceo.provenance import base_provenance, created_utc
from nyceo.report.content import Content, gather, table_of
from nyceo.zonal import remote
from nyceo.zonal.outputs import read_table, zonal_dir
from nyceo.zonal.remote import remove_other_versions
from nyceo.zonal.stage import published_preds, zonal_adapters

TEMPLATES = Path(__file__).resolve().parent / "templates"
MANIFEST = "report.json"


def report_dir(config: PipelineConfig, month: str) -> str:
    return join(paths.month_dir(config, month), "report")


def _file_inputs(config: PipelineConfig, month: str) -> dict[str, str]:
    """sha256 of the optional picture / evaluation inputs present now (quicklooks, change, eval)."""
    from nyceo.mosaic import layout

    found: dict[str, str] = {}
    month_dir = paths.month_dir(config, month)
    candidates = [q for a in zonal_adapters(config)
                  if remote.is_file(q := layout.out_path(config, layout.quicklook_rel(month, a, "nyc")))]
    for sub in ("change", "eval"):
        candidates += remote.find(join(month_dir, sub), (".png", ".json", ".csv"))
    for p in candidates:
        found[remote.relative(p, month_dir)] = remote.sha256_of(p)
    return found


def inputs_key(config: PipelineConfig, month: str) -> str | None:
    """None while the month's zonal tables are not published (the report needs at least those)."""
    from nyceo.contract import shift_month

    zkey = versioned.published_key(zonal_dir(config, month))
    if zkey is None:
        return None
    history = {m: k for back in range(1, config.report.history_months + 1)
               if (k := versioned.published_key(zonal_dir(config, m := shift_month(month, -back))))}
    return digest({"stage": "report", "code": CODE_VERSIONS.get("report", "1"), "zonal": zkey, "history": history,
                   "preds": {a: k for a, (_, k) in published_preds(config, month).items()},
                   "files": _file_inputs(config, month), "settings": config.report.model_dump(mode="json"),
                   "zonal_settings": {"hazards": [h.model_dump(mode="json") for h in config.zonal.hazards]}})


def published_files_missing(config: PipelineConfig, month: str) -> list[str]:
    """Files of the published report (report.md, index.html, report.json and every file it lists) not there."""
    base = versioned.resolve(report_dir(config, month))
    if base is None:
        return [join(report_dir(config, month), MANIFEST)]
    try:
        listed = json.loads(remote.read_bytes_or_none(join(base, MANIFEST)) or b"{}").get("files", [])
    except json.JSONDecodeError:
        listed = []
    return missing_files([join(base, *f.split("/")) for f in sorted({"report.md", "index.html", MANIFEST, *listed})])


def status(config: PipelineConfig, month: str) -> Status:
    from nyceo.zonal.stage import status as zonal_status

    published = versioned.published_key(report_dir(config, month))
    up = zonal_status(config, month)
    if up.state != "current":
        return Status("blocked", reason=f"zonal is {up.describe()}: {up.reason}", published_key=published)
    key = inputs_key(config, month)
    if key is None:
        return Status("blocked", reason="zonal tables of this month are not published (run zonal)", published_key=published)
    if published == key:
        return published_status(key, published, published_files_missing(config, month))
    return Status("stale" if published else "missing", key=key, published_key=published)


def outputs(config: PipelineConfig, month: str) -> dict[str, str]:
    d = report_dir(config, month)
    return {"html": join(d, "index.html"), "markdown": join(d, "report.md"), "manifest": join(d, MANIFEST)}


def _embed(content: Content, staging: Path) -> None:
    for sec in content.sections:
        for fig in sec.figures:
            data = (staging / fig.src).read_bytes()
            fig.src = "data:image/png;base64," + base64.b64encode(data).decode()


def render(config: PipelineConfig, month: str, key: str, content: Content) -> tuple[str, str]:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    from nyceo.train.manifest import pinned_config

    # adapters trained by the pipeline are pinned from their manifests (demo_seed cleared)
    untrained = any(a.demo_seed is not None for a in pinned_config(config).infer.adapters.values())
    ctx = {"title": config.report.title, "month": month, "adapters": zonal_adapters(config), "key": key,
           "config_hash": config.config_hash(), "software": f"nyceo {__version__}", "created": created_utc(),
           "sections": content.sections, "tables": content.tables, "notes": content.notes,
           "zonal_dir": f"{month}/zonal/", "untrained": untrained}
    html = env.get_template("report.html.j2").render(**ctx)
    md_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=False, trim_blocks=True)
    return html, md_env.get_template("report.md.j2").render(**ctx)


def run(config: PipelineConfig, month: str) -> dict[str, Any]:
    """Build and publish the month's report (skipped when current; needs the zonal tables)."""
    st = status(config, month)
    final = report_dir(config, month)
    if st.state == "current":
        return {"status": "current", "key": st.key, "html": join(final, "index.html")}
    if st.state == "blocked":
        return {"status": "skipped", "reason": st.reason}
    build = versioned.version_path(final, st.key)
    with tempfile.TemporaryDirectory(prefix="nyceo-report-") as tmp:  # staged locally, then copied file by file
        staging = Path(tmp)
        content = gather(config, month, staging)
        if config.report.embed_images:
            _embed(content, staging)
        html, md = render(config, month, st.key, content)
        images = sorted((staging / "img").glob("*")) if (staging / "img").is_dir() else []
        for f in images:
            upload_file_atomic(f, join(build, "img", f.name))
    write_bytes_atomic(join(build, "report.md"), md.encode())
    write_bytes_atomic(join(build, "index.html"), html.encode())
    write_json_atomic(join(build, MANIFEST), {"key": st.key, "inputs": content.inputs, "notes": content.notes,
                                              "files": ["index.html", "report.md", *(f"img/{f.name}" for f in images)],
                                              "provenance": base_provenance(config, "report", month=month, inputs_key=st.key)})
    versioned.publish(final, st.key, companions=())
    remove_other_versions(final, st.key)
    return {"status": "done", "key": st.key, "html": join(final, "index.html"), "notes": content.notes}


def artifacts(config: PipelineConfig, month: str) -> dict[str, Any]:
    """What the flow should publish as Prefect artifacts (the lead calls create_markdown_artifact /
    create_table_artifact with these): ``markdown`` (headline + link), ``tables`` {key: rows}."""
    final = report_dir(config, month)
    # a local link goes through the stable symlink; object stores have none: the published version
    link = join(versioned.resolve(final) or final if is_remote(final) else final, "index.html")
    lines = [f"# {config.report.title} — {month}", "", f"Report: [{link}]({Path(link).absolute().as_uri() if '://' not in link else link})", ""]
    tables: dict[str, list[dict[str, Any]]] = {}
    for adapter in zonal_adapters(config):
        t = read_table(config, month, f"{adapter}/borough.csv")
        if t is None:
            continue
        ad = config.infer.adapters[adapter]
        tab = table_of(adapter, t, ["zone_name", "mapped_km2", *[f"{k}_km2" for k in ad.classes], "impervious_share",
                                    "vegetation_share"], 10)
        tables[f"zonal-{adapter}-{month}".replace("_", "-")] = [dict(zip(tab.columns, r)) for r in tab.rows]
        lines.append(f"- {adapter}: city mapped area {t['mapped_km2'].sum():.1f} km²")
    for spec in config.zonal.hazards:
        t = read_table(config, month, f"exposure/{spec.name}_borough.csv")
        if t is not None:
            tab = table_of(spec.name, t, ["hazard_zone", "unit_name", "adapter", "land_km2", "developed_km2", "building_km2"], 50)
            tables[f"exposure-{spec.name}-{month}".replace("_", "-")] = [dict(zip(tab.columns, r)) for r in tab.rows]
    return {"markdown": "\n".join(lines), "tables": tables, "link": link}
