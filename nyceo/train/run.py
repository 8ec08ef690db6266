"""Train one adapter end to end: checks, split, N seeded runs, test figures, export, manifest.

``train_adapter(config, adapter, seeds=1, resume=False)`` is what ``nyceo adapters train`` and
``flows/train.py`` call. Every check on the input happens before the first training step
(``preflight``): the adapter exists, the remap covers its classes, the LoRA targets are the
loader's, the stacks exist, the labels overlap them with known codes, each split has chips.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nyceo.config import PipelineConfig
from nyceo.io import write_json_atomic
from nyceo.model.build import DECODER_CHANNELS
from nyceo.train.data import ChipDataset, SampleSet, collect_samples
from nyceo.train.errors import TrainError
from nyceo.train.export import config_snippet, export_folder, write_adapter
from nyceo.train.fit import confusion, fit_one, lora_regex, metrics_from_confusion
from nyceo.train.labels import check_remap
from nyceo.train.manifest import manifest_path, software_versions, train_key, train_root
from nyceo.train.split import SPLITS, split_chips, write_splits

log = logging.getLogger("nyceo.train")


@dataclass
class Prepared:
    """Checked inputs of a training: samples, split, key."""

    samples: SampleSet
    splits: dict[str, list[str]]
    key: str


def preflight(config: PipelineConfig, adapter: str, seeds: int = 1) -> Prepared:
    """Every input check, in order of cost; raises TrainError naming the problem and the fix."""
    if adapter not in config.train.adapters:
        raise TrainError(f"adapter '{adapter}' has no training recipe; add train.adapters.{adapter} "
                         f"(known: {sorted(config.train.adapters)})")
    if adapter not in config.infer.adapters:
        raise TrainError(f"train.adapters.{adapter} has no infer.adapters.{adapter} entry (classes, colours, "
                         "normalization, backbone, source); add it")
    tcfg, ad = config.train.adapters[adapter], config.infer.adapters[adapter]
    check_remap(adapter, tcfg, list(ad.classes))
    lora_regex(adapter, tcfg.lora_targets)
    export_folder(config, adapter)
    samples = collect_samples(config, adapter)
    splits = split_chips(sorted({s.chip_id for s in samples.samples}), tcfg.split)
    key = train_key(config, adapter, samples.stacks, samples.labels.identity, seeds)
    return Prepared(samples, splits, key)


def _datasets(config: PipelineConfig, adapter: str, prep: Prepared, seed: int) -> dict[str, ChipDataset]:
    by_split = {s: set(ids) for s, ids in prep.splits.items()}
    tcfg = config.train.adapters[adapter]
    return {s: ChipDataset([x for x in prep.samples.samples if x.chip_id in by_split[s]], config, adapter,
                           flips=tcfg.flips and s == "train", seed=seed) for s in SPLITS}


def stack_keys(prep: Prepared) -> dict[str, str]:
    """Month -> content key of its stack (what the feature cache keys on)."""
    from nyceo.keys import digest

    return {m: p.get("inputs_key") or digest(p) for m, p in prep.samples.stacks.items()}


def train_adapter(config: PipelineConfig, adapter: str, seeds: int = 1, resume: bool = False,
                  callbacks: list | None = None, max_steps: int = -1) -> dict[str, Any]:
    """Train ``adapter`` (``seeds`` runs), export the first seed's model; return the report
    (folder, sha256, metrics, snippet, key, train_root, and ``task``: the exported model)."""
    if seeds < 1:
        raise TrainError(f"--seeds {seeds}: give at least 1")
    prep = preflight(config, adapter, seeds)
    root = train_root(config, adapter)
    write_splits(root / "splits", prep.splits)
    tcfg, ad = config.train.adapters[adapter], config.infer.adapters[adapter]
    runs, first = [], None
    for k in range(seeds):
        seed = tcfg.seed + k
        sets = _datasets(config, adapter, prep, seed)
        t0 = time.perf_counter()
        task, res = fit_one(config, adapter, sets["train"], sets["val"], root / "runs" / f"seed{seed}", seed,
                            resume, callbacks, max_steps, stacks=stack_keys(prep))
        wall = time.perf_counter() - t0
        soup, test = _soup(task, res, sets, list(ad.classes), tcfg.ignore_index)
        if test is None:
            test = metrics_from_confusion(confusion(task, sets["test"], len(ad.classes), tcfg.ignore_index),
                                          list(ad.classes))
        runs.append({"seed": seed, "val_mIoU": res.val_miou, "test": test, "epochs": res.epochs,
                     "steps": res.global_step, "kept": res.kept, "wall_s": round(wall, 1), "run_dir": str(res.run_dir),
                     **({"soup": soup} if soup else {})})
        log.info("train %s seed %d: test mIoU %s, %d epochs, %.0f s", adapter, seed, test["mIoU"], res.epochs, wall)
        if first is None:
            first = task
    report = _export(config, adapter, prep, first, runs)
    report["task"] = first  # the exported (first seed's) model, for callers that compare predictions
    return report


def _soup(task: Any, res: Any, sets: dict[str, ChipDataset], classes: list[str],
          ignore_index: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """average_last > 0: the soup record and, when the soup is kept, its test metrics (``nyceo.train.soup``)."""
    if res.keeper is None:
        return None, None
    if not res.keeper.states:
        return {"average_last": res.keeper.k, "exported": "best", "epochs": [],
                "note": "the final phase ran no epoch in this attempt (resumed after its end); nothing averaged"}, None
    from nyceo.train.soup import soup_or_best

    return soup_or_best(task, res.keeper, sets["val"], sets["test"], classes, ignore_index)


def _export(config: PipelineConfig, adapter: str, prep: Prepared, task: Any, runs: list[dict]) -> dict[str, Any]:
    import torch

    values = [r["test"]["mIoU"] for r in runs if r["test"]["mIoU"] is not None]
    seeds = {"values": values, "mean": statistics.fmean(values) if values else None,
             "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    chips = {s: len(ids) for s, ids in prep.splits.items()}
    first = runs[0]
    training = {"key": prep.key, "seed": first["seed"], "epochs": first["epochs"], "steps": first["steps"],
                "wall_s": first["wall_s"], "kept": first["kept"],
                "probe_epochs": config.train.adapters[adapter].probe_epochs, "chips": chips, "months": list(config.train.adapters[adapter].months),
                "base": config.infer.base_weights, "decoder_channels": list(DECODER_CHANNELS),
                "device": "cuda" if torch.cuda.is_available() else "cpu", "software": software_versions()}
    metrics = {"adapter": adapter, "test": first["test"], "val_mIoU": first["val_mIoU"], "seeds": seeds,
               "runs": [{k: v for k, v in r.items() if k != "run_dir"} for r in runs], "splits": chips,
               "labels": prep.samples.labels.identity, "training_key": prep.key}
    if "soup" in first:
        metrics["soup"] = first["soup"]
    folder = export_folder(config, adapter)
    hashes = write_adapter(task, config, adapter, folder, metrics, prep.splits["test"], training)
    snippet = config_snippet(config, adapter, hashes)
    root = train_root(config, adapter)
    (root / "config_snippet.yaml").write_text(snippet)
    write_json_atomic(str(manifest_path(config, adapter)),
                      {"adapter": adapter, "key": prep.key, "folder": str(folder), "sha256": hashes,
                       "test_mIoU": first["test"]["mIoU"], "seeds": seeds})
    return {"adapter": adapter, "folder": str(folder), "sha256": hashes, "snippet": snippet, "metrics": metrics,
            "key": prep.key, "train_root": str(Path(root))}
