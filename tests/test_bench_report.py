"""`make bench` pieces that need no benchmark run: the page rendering, the backfill arithmetic, the
scaling summary and the scaling configuration (all pure or file-only; well under a second)."""

from __future__ import annotations

import yaml

from benchmarks.bench_report import BF16_PEAK_TFLOPS, MFU, backfill, render_performance, render_scaling
from benchmarks.make_bench import BENCHES, machine
from benchmarks.scaling_bench import area_config, summarize

META = {"machine": {"cpu": "Test CPU", "cores": "2", "ram_gib": "23.5", "os": "Linux", "python": "3.11",
                    "commit": "abc123", "branch": "b"},
        "gpu": {"torch": "2.13.0+cpu", "cuda": False}, "load_before": [1.5, 1.0, 0.5], "load_after": [2.5, 2.0, 1.0],
        "runs": {"mosaic": {"ok": True, "seconds": 12.0, "log": "m.log"}, "zonal": {"ok": False, "seconds": 3.0, "log": "z.log"}},
        "started": "2026-12-03 22:00 UTC", "total_s": 900.0}


def run(label: str, chips: int, acq: float, inf: float, rss: float) -> dict:
    return {"label": label, "chips": chips, "acquire_s": acq, "infer_s": inf, "seconds": acq + inf, "load_s": 10.0,
            "acquire_cpu_s": acq, "infer_cpu_s": inf, "peak_rss_mb": rss, "stack_bytes": chips * 2e6,
            "pred_bytes": chips * 4e5, "adapters": ["lulc_nyc", "tim_nyc", "buildings_nyc"]}


def scaling() -> dict:
    runs = [run("Manhattan", 32, 8.0, 72.0, 3000.0), run("Manhattan,Bronx", 64, 16.0, 160.0, 3100.0)]
    return {"month": "2024-07", "runs": runs, "summary": summarize(runs), "city_chips": 232}


def test_performance_page_rows_ratios_targets_and_machine() -> None:
    figures = {"mosaic": {"mb": 24.3, "ours_s": 0.5, "reference_s": 0.4, "ratio": 0.8 / 1.0, "ours_file_bytes": 1,
                          "reference_file_bytes": 1, "repeats": 3, "compression": "ZSTD"},
               "evaluate": {"ours_s": 3.0, "reference_s": 1.0, "ratio": 3.0, "chips": 232, "repeats": 2},
               "scaling": scaling()}
    page = render_performance(META, figures)
    assert "Test CPU, 2 cores, 23.5 GiB RAM" in page and "abc123" in page and "1.50, 1.00, 0.50" in page
    cog = next(ln for ln in page.splitlines() if ln.startswith("| COG writer"))
    assert "| 49 MB/s | 61 MB/s | 0.80 |" in cog and cog.endswith("| ≥ 0.8 | yes |")
    ev = next(ln for ln in page.splitlines() if ln.startswith("| Evaluation"))
    assert "| 3.00 |" in ev and ev.endswith("| ≤ 2 | **no** |")  # a missed target says so
    lin = next(ln for ln in page.splitlines() if ln.startswith("| Scaling, acquire"))
    assert "| 1.10 |" in lin and lin.endswith("| yes |")  # (176 / 80) / (64 / 32) = 1.10
    assert "| `zonal` | **failed** |" in page
    assert "No GPU on this machine" in page and "scaling.png" in page


def _zonal(ref: float, first: float, cached: float) -> dict:
    return {"reference_s": ref, "first_s": first, "cached_s": cached, "ratio_first": ref / first,
            "ratio_cached": ref / cached, "second_over_first": cached / first}


def test_zonal_rows_both_tables_both_months_and_the_coverage_pass_floor() -> None:
    z = {**_zonal(0.5, 0.9, 0.06), "with_probability": _zonal(3.0, 1.2, 0.3), "n_polygons": 262,
         "coverage_pass_s": 0.45, "probability": True}
    lines = [ln for ln in render_performance(META, {"zonal": z}).splitlines() if ln.startswith("| Zonal")]
    assert len(lines) == 6
    first, cached, second = lines[:3]
    assert "first month" in first and "pass alone 0.45 s (0.90 × rasterstats' whole run) + a second month's 0.06 s = 0.51 s, " \
        "above the 0.10 s" in first
    assert "| 0.900 s | 0.500 s | 0.56 |" in first and first.endswith("| ≥ 5 | **no** |")
    assert "| 0.060 s | 0.500 s | 8.33 |" in cached and cached.endswith("| ≥ 5 | yes |")
    assert "| 0.07 | time second ÷ first |" in second and second.endswith("| — |")
    assert "probability-weighted" in lines[4] and "| 10.00 |" in lines[4] and lines[4].endswith("| yes |")


def test_backfill_from_measured_per_chip_figures() -> None:
    s = scaling()
    b = backfill(s)
    assert b["chips"] == 232 and b["chip_months"] == 232 * 120
    assert abs(b["windows_month"] - 910) < 1e-6
    assert abs(b["tflop_month"] - 910 * 0.5 * (2 + 2.0)) < 1e-6  # 2 plain adapters + TiM at x2
    assert abs(b["gpu_h"] - b["tflop_month"] / (BF16_PEAK_TFLOPS * MFU) * 120 / 3600) < 1e-9
    assert abs(b["acquire_cpu_h"] - 16.0 / 64 * 232 * 120 / 3600) < 1e-9  # largest area's CPU-s/chip x city
    assert abs(b["stack_gb"] - 2e6 * 232 * 120 / 1e9) < 1e-9
    doc = render_scaling(META, s)
    assert "| Manhattan,Bronx | 64 | 16.0 | 160.0 | 176.0 | 2.75 |" in doc and "**1.10**" in doc


def test_scaling_config_drops_training_and_limits_boroughs(tmp_path) -> None:
    from pathlib import Path

    path = area_config(Path("configs/demo.yaml"), tmp_path, "a0", ["Manhattan"], tmp_path / "emb", tmp_path / "ads")
    raw = yaml.safe_load(path.read_text())
    assert "train" not in raw and raw["grid"]["boroughs"] == ["Manhattan"]
    assert raw["run"]["output_root"] == str(tmp_path / "a0") and raw["catalog"]["embedded_root"] == str(tmp_path / "emb")
    assert all(ad["source"].startswith(str(tmp_path / "ads")) for ad in raw["infer"]["adapters"].values())
    from nyceo.config import load_config

    load_config(path)  # still a valid strict configuration


def test_make_bench_knows_every_table_benchmark_and_the_machine() -> None:
    assert {"acquire", "infer", "model", "mosaic", "zonal", "rerun", "scaling"} <= set(BENCHES)
    m = machine()
    assert int(m["cores"]) >= 1 and float(m["ram_gib"]) > 0 and m["cpu"] and m["commit"]


def test_scaling_compares_the_city_with_the_largest_borough_in_wall_and_cpu_time() -> None:
    runs = [run("Manhattan", 32, 4.0, 50.0, 3800.0), run("Queens", 92, 8.0, 200.0, 4600.0),
            run("city", 232, 20.0, 500.0, 4900.0)]
    runs[-1]["acquire_cpu_s"], runs[-1]["infer_cpu_s"] = 20.0, 480.0  # CPU differs from wall
    for r, mpx, res in zip(runs, (2.1, 5.0, 5.0), (2.8, 6.5, 10.0)):
        r["max_block_read_mpx"], r["max_resident_read_mpx"] = mpx, res
    sm = summarize(runs)
    assert sm["reference"] == "Queens"  # the largest single borough, not the smallest area
    assert abs(sm["linearity"] - (520 / 208) / (232 / 92)) < 1e-12
    assert abs(sm["cpu_linearity"] - (500 / 208) / (232 / 92)) < 1e-12
    assert abs(sm["memory_ratio"] - 4900 / 4600) < 1e-12
    s = {"month": "2024-07", "runs": runs, "summary": sm, "city_chips": 232}
    rows = [ln for ln in render_performance(META, {"scaling": s}).splitlines() if ln.startswith("| Scaling")]
    assert len(rows) == 3 and "city (232 chips) vs Queens (92 chips)" in rows[0]
    assert "| 0.99 |" in rows[0] and "| 0.95 |" in rows[1] and "| 1.07 |" in rows[2]
    assert all(r.endswith("| yes |") for r in rows)
    doc = render_scaling(META, s)
    assert "city vs Queens" in doc and "| 2.1 | 2.8 |" in doc and "city 10.0 Mpx → 4900 MB" in doc
