"""The run report: built from two months of zonal tables plus quicklook, change and evaluation pictures,
self-contained, and rendered in a real headless Chromium (every image decoded: naturalWidth > 0)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from nyceo import versioned  # noqa: E402
from nyceo.report import stage as report  # noqa: E402
from nyceo.zonal import stage as zonal  # noqa: E402
from tests.zonal_helpers import MONTH, make_config, publish_pred  # noqa: E402

PROBE = """<script>window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  document.body.setAttribute('data-probe', JSON.stringify(imgs.map(i => [i.getAttribute('src').slice(0, 40), i.naturalWidth])));
});</script></body>"""


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.imshow(np.random.default_rng(seed).random((8, 8)))
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    cfg = make_config(tmp, ndvi=False, adapters=["lulc_nyc"])
    for i, month in enumerate(("2024-06", MONTH)):
        publish_pred(cfg, month, "lulc_nyc", seed=10 + i)
        zonal.run(cfg, month)
    out = tmp / "outputs" / MONTH
    _png(out / "quicklook" / "lulc_nyc" / "nyc.png", 1)
    _png(out / "change" / "lulc_nyc" / "mom" / "transitions.png", 2)
    _png(out / "eval" / "lulc_nyc" / "confusion_matrix.png", 3)
    (out / "eval" / "lulc_nyc" / "probes.csv").write_text("probe,rule,measured,pass\ncentral_park,forest+herbaceous>0.5,0.62,true\n")
    result = report.run(cfg, MONTH)
    return cfg, tmp, result


def test_report_files_pictures_first_self_contained(built):
    cfg, tmp, result = built
    assert result["status"] == "done"
    folder = Path(versioned.resolve(report.report_dir(cfg, MONTH)))
    html = (folder / "index.html").read_text()
    md = (folder / "report.md").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    # pictures: city map, change map, bar chart, heat grid, evaluation, time series (two months)
    for name in ("map_lulc_nyc.png", "change_lulc_nyc_mom_transitions.png", "areas_lulc_nyc.png", "heat_lulc_nyc_100m.png",
                 "eval_lulc_nyc_confusion_matrix.png", "series_lulc_nyc.png"):
        assert f"img/{name}" in srcs, name
    assert all((folder / s).is_file() for s in srcs)
    assert html.index("<img") < html.index("<table"), "pictures come before the tables"
    assert not re.search(r'(src|href)="(https?:)?//', html), "no network references"
    assert "central_park" in html and "Exposure — shoreline_300m x borough" in html
    assert "| zone_name |" in md and "![lulc_nyc — city](img/map_lulc_nyc.png)" in md
    assert json.loads((folder / "report.json").read_text())["key"] == report.inputs_key(cfg, MONTH)
    assert report.status(cfg, MONTH).state == "current" and report.run(cfg, MONTH)["status"] == "current"


def test_artifact_payload_has_headline_tables_and_link(built):
    cfg, *_ = built
    art = report.artifacts(cfg, MONTH)
    assert art["link"].endswith("report/index.html") and "index.html" in art["markdown"]
    rows = art["tables"][f"zonal-lulc-nyc-{MONTH}"]
    assert {"zone_name", "developed_km2", "impervious_share"} <= set(rows[0])
    assert f"exposure-shoreline-300m-{MONTH}" in art["tables"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _rendered_images(html_file: Path) -> list[list]:
    probe = html_file.with_name("probe.html")
    probe.write_text(html_file.read_text().replace("</body>", PROBE))
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"data-probe=\"([^\"]*)\"", out.stdout)
    assert found, f"chromium did not run the probe: {out.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(_chromium() is None, reason="Debian package chromium is not installed (`make browser`: apt-get install -y chromium)")
def test_report_renders_every_image_in_headless_chromium(built, tmp_path):
    cfg, _, _ = built
    copy = tmp_path / "report"
    shutil.copytree(versioned.resolve(report.report_dir(cfg, MONTH)), copy)
    images = _rendered_images(copy / "index.html")
    assert len(images) >= 6
    assert all(width > 0 for _, width in images), images
    # embedded mode: one file, images as data URIs, still decoded by the browser
    cfg_embed = cfg.model_copy(update={"report": cfg.report.model_copy(update={"embed_images": True})})
    report.run(cfg_embed, MONTH)
    single = tmp_path / "single.html"
    shutil.copyfile(Path(versioned.resolve(report.report_dir(cfg_embed, MONTH))) / "index.html", single)
    images = _rendered_images(single)
    assert len(images) >= 6 and all(src.startswith("data:image/png") and w > 0 for src, w in images), images
