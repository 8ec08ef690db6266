"""Re-run and kill-and-resume benchmark of the monthly flow (each run a fresh `nyceo run` process).

1. first run of a month vs a re-run with an execution-only configuration change (batch size,
   threads, prefetch, block sizes, dask workers, run name): target re-run <= 5 % of the first, and
   every output reused untouched (same bytes, same mtime);
2. a run SIGKILLed (whole process group) during acquire, again during infer, again during mosaic,
   then (strace, at a folder the stage creates mid-write) each of evaluate, change, zonal and report
   through its own command, then run to the end, vs the uninterrupted run: sha256 of every output
   file must be equal. The previous month's stack and one adapter's predictions are made first so
   that change does real work.
SOURCE_DATE_EPOCH is pinned so provenance timestamps are reproducible. Compared outputs exclude
run_summary.json (timings) and lock files.

    .venv/bin/python benchmarks/rerun_bench.py [--config configs/demo.yaml] [--month 2024-07] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
NYCEO = str(Path(sys.executable).parent / "nyceo")
EXCLUDE = ("run_summary.json", ".locks")
EXECUTION_ONLY = {"run": {"name": "renamed-run"}, "infer": {"batch_size": 3, "cpu_threads": 1, "prefetch_blocks": False,
                  "block_size_chips": 1, "heads_resident": False}, "acquire": {"read_threads": 1},
                  "grid": {"block_size_chips": 3}, "dask": {"n_workers": 1}}
# A few Staten Island chips in 4 one-chip blocks, with the embedded city generated only around them.
TINY = {
    "grid": {"boroughs": ["Staten Island"], "block_size_chips": 2},
    "catalog": {"embedded_bbox_lonlat": [-74.2149, 40.6066, -74.1543, 40.6519]},
    "acquire": {"chip_ids": ["r0231_c0253", "r0231_c0254", "r0232_c0253", "r0232_c0254"]},
}


def make_config(base: Path, out_root: Path, embedded_root: Path, tiny: bool,
                extra: dict[str, dict] | None = None, name: str | None = None) -> Path:
    raw = yaml.safe_load(base.read_text())
    raw.setdefault("run", {})["output_root"] = str(out_root)
    raw.setdefault("catalog", {})["embedded_root"] = str(embedded_root)
    if tiny:
        raw.pop("train", None)  # 4 chips cannot hold the demo's training split: untrained demo adapters
    for section in (TINY if tiny else {}, extra or {}):
        for key, values in section.items():
            raw.setdefault(key, {}).update(values)
    path = out_root.parent / f"{name or out_root.name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def env(prefect_home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "SOURCE_DATE_EPOCH": "1720000000", "PREFECT_LOGGING_LEVEL": "WARNING"}


def run_month(config: Path, month: str, prefect_home: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([NYCEO, "run", "-m", month, "-c", str(config), "--no-progress"], cwd=REPO,
                         env=env(prefect_home), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nyceo run failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - t0


def first_file(pattern: str):
    """A predicate: the output root holds a file matching ``pattern``."""
    return lambda root: any(p.is_file() for p in root.glob(pattern))


KILL_POINTS = {  # stage -> a run is inside it once this file exists (its first work unit recorded), polled every 50 ms
    "acquire": "{month}/acquire/*/blocks/*.json",
    "infer": "{month}/pred/*.zarr.done/*.json",
    "mosaic": "{month}/cog/*/*.tif",
}
# The later stages write a month's outputs within 0.01-1 s, too fast to poll: strace kills the process
# (SIGKILL, injected on the syscall) when it creates this folder, i.e. after some of the stage's outputs
# and before the rest. ``{month}`` is the month run; ``*`` (a key) is read from an uninterrupted run's tree.
KILL_AT_MKDIR = {
    "evaluate": "{month}/eval/tim_nyc/embedded_landcover",  # lulc_nyc's metrics written, tim_nyc's and buildings' not
    "change": "{month}/change/buildings_nyc/mom/quicklook",  # the pair's change COGs written, its record not
    "zonal": "{month}/zonal@*/tim_nyc",  # lulc_nyc's tables written in the unpublished build, the rest not
    "report": "{month}/report@*/img",  # rendered, its first published file about to be written
}
PREDECESSOR = "2024-06"  # change needs the previous month's predictions (M-1) to do real work


def kill_when(config: Path, month: str, prefect_home: Path, out_root: Path, ready, timeout_s: float = 600) -> None:
    """Start a run, SIGKILL its process group once ``ready(out_root)`` holds."""
    proc = subprocess.Popen([NYCEO, "run", "-m", month, "-c", str(config), "--no-progress"], cwd=REPO,
                            env=env(prefect_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if ready(out_root):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        if proc.poll() is not None:
            raise RuntimeError("the run finished before the kill point; nothing to interrupt")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise TimeoutError("kill point not reached in time")


def kill_at_mkdir(argv: list[str], prefect_home: Path, folder: Path, timeout_s: float = 600) -> None:
    """Run ``argv`` under strace, which SIGKILLs the process that creates ``folder``; then SIGKILL
    the rest of its process group (dask workers, a Prefect server) as a machine loss would."""
    fd, name = tempfile.mkstemp(suffix=".strace")
    os.close(fd)
    log = Path(name)
    cmd = [shutil.which("strace") or "strace", "-f", "-q", "-e", "signal=none", "-o", str(log),
           "-P", str(folder), "-e", "trace=mkdir,mkdirat", "-e", "inject=mkdir,mkdirat:signal=KILL", *argv]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env(prefect_home), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline:
            ended = proc.poll() is not None
            if f'"{folder}"' in log.read_text():  # strace logs the call it answered with SIGKILL
                return
            if ended:
                raise RuntimeError(f"{' '.join(argv[1:3])} ended before creating {folder}; nothing to interrupt")
            time.sleep(0.05)
        raise TimeoutError(f"{folder} not created in time")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.unlink(missing_ok=True)


def run_stage(stage: str, config: Path, month: str, prefect_home: Path) -> None:
    """One stage's own command (``nyceo <stage> -m MONTH -c CONFIG``, no Prefect)."""
    out = subprocess.run([NYCEO, stage, "-m", month, "-c", str(config)], cwd=REPO, env=env(prefect_home),
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nyceo {stage} -m {month} failed:\n{out.stderr[-3000:]}")


def mkdir_target(pattern: str, month: str, clean_root: Path, out_root: Path) -> Path:
    """``pattern`` resolved in the uninterrupted run's tree, placed in ``out_root``."""
    found = sorted(clean_root.glob(pattern.format(month=month)))
    if len(found) != 1:
        raise RuntimeError(f"{pattern} matches {len(found)} folders in {clean_root}, expected 1")
    return out_root / found[0].relative_to(clean_root)


def prepare_predecessor(config: Path, prefect_home: Path, adapter: str = "buildings_nyc") -> None:
    """The previous month's stack and one adapter's predictions (what change needs), without Prefect."""
    for args in (["acquire", "-m", PREDECESSOR], ["infer", "-m", PREDECESSOR, "-a", adapter]):
        out = subprocess.run([NYCEO, *args, "-c", str(config)], cwd=REPO, env=env(prefect_home),
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"nyceo {' '.join(args)} failed:\n{out.stderr[-3000:]}")


def kill_and_resume(config: Path, month: str, prefect_home: Path, out_root: Path, clean_root: Path | None = None,
                    after_kill=None) -> list[str]:
    """Kill a run inside each stage in turn (the next run resumes it), then finish; stages killed.
    With ``clean_root`` (an uninterrupted run's tree) the later stages are killed too, each through its
    own command (no Prefect server to start, which is what makes a `nyceo run` slow), after the mosaic
    kill (resumed by `nyceo mosaic`, as the flow finishes it first), in the flow's order: evaluate, change
    and zonal (each resumed by its own command, since zonal's key covers evaluate's and change's outputs
    and report reads zonal's), then report. The final `nyceo run` resumes report and finds the rest
    current. ``after_kill(stage)`` is called after each kill."""
    killed = []
    for stage, pattern in KILL_POINTS.items():
        ready = first_file(pattern.format(month=month))
        if not ready(out_root):
            kill_when(config, month, prefect_home, out_root, ready)
            killed.append(stage)
            if after_kill:
                after_kill(stage)
    if clean_root:  # the later stages' keys cover the month's COGs (report): mosaic finishes first, as in the flow
        run_stage("mosaic", config, month, prefect_home)
    for stage, pattern in (KILL_AT_MKDIR.items() if clean_root else ()):
        argv = [NYCEO, stage, "-m", month, "-c", str(config)]
        kill_at_mkdir(argv, prefect_home, mkdir_target(pattern, month, clean_root, out_root))
        killed.append(stage)
        if after_kill:
            after_kill(stage)
        if stage != "report":  # zonal's key covers evaluate's and change's outputs; report reads zonal's
            run_stage(stage, config, month, prefect_home)
    run_month(config, month, prefect_home)
    return killed


def stat_all(root: Path) -> dict[str, tuple[str, int]]:
    """(sha256, mtime_ns) of every output file."""
    hashes = output_hashes(root)
    return {k: (v, (root / k).stat().st_mtime_ns) for k, v in hashes.items()}


def output_hashes(root: Path) -> dict[str, str]:
    """sha256 of every output file under ``root`` except run summaries and Prefect cache records."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part in EXCLUDE for part in p.relative_to(root).parts):
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--month", default="2024-07")
    ap.add_argument("--tiny", action="store_true", help="a few Staten Island chips (fast)")
    ap.add_argument("--no-kill", action="store_true", help="skip part 2 (kill in every stage + resume)")
    ap.add_argument("--json", default=None, help="also write the figures as JSON to this path")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nyceo-rerun-"))
    emb, home = work / "embedded", work / "prefect-home"
    cfg = make_config(REPO / args.config, work / "run", emb, args.tiny)
    other = make_config(REPO / args.config, work / "run", emb, args.tiny, EXECUTION_ONLY, name="execution-only")
    prepare_predecessor(cfg, home)  # the previous month's predictions, so that change does real work
    shutil.copytree(work / "run", work / "base", symlinks=True)
    run_month(cfg, args.month, home)  # warm-up: generates the embedded imagery once, not timed
    shutil.rmtree(work / "run")
    shutil.copytree(work / "base", work / "run", symlinks=True)
    first = run_month(cfg, args.month, home)
    before = stat_all(work / "run")
    rerun = run_month(other, args.month, home)
    after = stat_all(work / "run")
    touched = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    print(f"first run                        {first:8.1f} s")
    print(f"re-run, execution-only change    {rerun:8.1f} s   ratio {rerun / first:6.1%}  (target <= 5 %)")
    print(f"outputs rewritten by the re-run: {len(touched)} of {len(before)} {touched[:5]}")
    figures = {"first_s": first, "rerun_s": rerun, "ratio": rerun / first, "outputs": len(before),
               "rewritten": len(touched), "tiny": args.tiny, "month": args.month}
    if args.no_kill:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1))
        print(f"work dir: {work}")
        return
    (work / "run").rename(work / "clean")
    (work / "base").rename(work / "run")
    t0 = time.perf_counter()
    killed = kill_and_resume(cfg, args.month, home, work / "run", clean_root=work / "clean")
    a, b = output_hashes(work / "clean"), output_hashes(work / "run")
    diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"killed inside {killed}; finished after {time.perf_counter() - t0:.1f} s in all")
    print(f"outputs: {len(a)} files uninterrupted, {len(b)} files killed+resumed, {len(diff)} differ")
    for k in diff[:20]:
        print(f"  differs: {k}")
    print("byte-identical: " + ("yes" if not diff else "NO"))
    if args.json:
        Path(args.json).write_text(json.dumps(figures | {"killed_in": killed, "files_differ": len(diff)}, indent=1))
    print(f"work dir: {work}")


if __name__ == "__main__":
    main()
