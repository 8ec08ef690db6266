"""Training chips: the acquire stage's stacks (exactly the inference inputs) + labels on the chip grid.

``collect_samples`` checks everything before any training: the stacks of the configured months
exist and are finished, the labels overlap them, every label code is in the remap. A sample is
one (month, chip): its box in the month's stack and its label chip. ``ChipDataset`` reads a chip
from the stack per item (``StackStore.read`` + ``assemble_batch``: the inference fill rules),
normalises it with the adapter's statistics exactly as ``AdapterRunner`` does, repeats the DEM
over time, and sets pixels without any valid Sentinel-2 observation to ``ignore_index`` (the
inference stage writes nodata there).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from nyceo import paths
from nyceo.config import AdapterConfig, PipelineConfig, TrainAdapterConfig
from nyceo.grid import Lattice, chip_id, parse_chip_id
from nyceo.infer.inputs import DEM_KEY, S1_KEY, S2_KEY, assemble_batch, pixels_with_s2
from nyceo.infer.store import StackStore, StackStoreError
from nyceo.train.errors import TrainError
from nyceo.train.labels import LabelSource, chip_label_reader, remap_labels, resolve_label_source

MODALITIES = (S2_KEY, S1_KEY, DEM_KEY)


@dataclass(frozen=True)
class ChipSample:
    """One training example: a chip of one month's stack and its labels (class indices, int16)."""

    month: str
    chip_id: str
    stack_path: str
    box: tuple[int, int, int, int]
    labels: np.ndarray = field(repr=False)


@dataclass
class SampleSet:
    """Every usable sample and what names the inputs (stack provenance digests, label identity)."""

    samples: list[ChipSample]
    stacks: dict[str, dict[str, Any]]
    labels: LabelSource


def _hash_order(cid: str) -> str:
    return hashlib.sha256(f"nyceo-train-chip/{cid}".encode()).hexdigest()


def open_stacks(config: PipelineConfig, adapter: str, months: list[str]) -> dict[str, StackStore]:
    lattice = Lattice.from_config(config.grid)
    out = {}
    for month in months:
        path = paths.stack_store(config, paths.check_month(month))
        try:
            out[month] = StackStore(path, lattice)
        except StackStoreError as exc:
            raise TrainError(f"train.adapters.{adapter}.months: month {month} has no finished stack ({exc}); "
                             f"run `nyceo acquire --month {month} -c <config>` or train on other months") from None
    if not out:
        raise TrainError(f"train.adapters.{adapter}.months is empty; name the month(s) whose stacks to train on")
    return out


def candidate_chips(store: StackStore, tcfg: TrainAdapterConfig) -> list[tuple[int, int]]:
    """(row, col) of the chips of a stack with any valid S2 observation (and in chip_ids when given)."""
    area = store.area
    valid = np.asarray(store.group["s2_valid"][:]).any(axis=0)
    size = area.lattice.chip_size_px
    per_chip = valid.reshape(area.n_rows, size, area.n_cols, size).any(axis=(1, 3))
    chips = [(area.row0 + r, area.col0 + c) for r, c in zip(*np.nonzero(per_chip))]
    if tcfg.chip_ids:
        wanted = {parse_chip_id(c) for c in tcfg.chip_ids}
        chips = [rc for rc in chips if rc in wanted]
    return chips


def collect_samples(config: PipelineConfig, adapter: str) -> SampleSet:
    """All (month, chip) samples of ``adapter``'s training recipe, labels read and checked."""
    tcfg = config.train.adapters[adapter]
    stores = open_stacks(config, adapter, tcfg.months)
    per_month = {m: candidate_chips(s, tcfg) for m, s in stores.items()}
    common = sorted(set().union(*per_month.values()), key=lambda rc: _hash_order(chip_id(*rc)))
    if tcfg.max_chips is not None:
        common = common[: tcfg.max_chips]
    keep = set(common)
    source = resolve_label_source(config, adapter, tcfg)
    lattice = Lattice.from_config(config.grid)
    areas = {m: s.area.bounds for m, s in stores.items()}
    read, name = chip_label_reader(source, adapter, tcfg, lattice, config.grid.crs, sorted(keep), areas)
    labels: dict[tuple[int, int], np.ndarray] = {}
    for rc in sorted(keep):
        codes, nodata = read(*rc)
        where = f"{name}, chip {chip_id(*rc)}"
        lab = remap_labels(codes, tcfg.labels.remap, tcfg.labels.ignore_codes, nodata, tcfg.ignore_index, where)
        if (lab != tcfg.ignore_index).any():
            labels[rc] = lab.astype(np.int16)
    if not labels:
        raise TrainError(
            f"labels of train.adapters.{adapter} ({tcfg.labels.source} -> {source.path}) do not overlap the stacks "
            f"of {sorted(stores)} (areas {areas}, {len(keep)} chips with data): no chip has a labelled pixel. "
            "Use a label raster or layer covering the grid, or the months/chips it covers"
        )
    samples = []
    for month, store in stores.items():
        for rc in per_month[month]:
            if rc in labels:
                ys, xs = store.area.chip_slices(*rc)
                samples.append(ChipSample(month, chip_id(*rc), store.path, (ys.start, ys.stop, xs.start, xs.stop),
                                          labels[rc]))
    stacks = {m: s.provenance for m, s in stores.items()}
    return SampleSet(samples, stacks, source)


def normalize(inputs: dict[str, np.ndarray], ad: AdapterConfig, timesteps: int) -> dict[str, torch.Tensor]:
    """Raw model inputs [B, ...] -> normalised tensors, DEM repeated over T (the runner's ``_prepare``)."""
    out = {}
    for mod in MODALITIES:
        x = torch.from_numpy(np.ascontiguousarray(inputs[mod], dtype=np.float32))
        if mod == DEM_KEY:
            x = x.unsqueeze(2).expand(-1, -1, timesteps, -1, -1)
        mean = torch.tensor(ad.norm_means[mod]).view(1, -1, 1, 1, 1)
        std = torch.tensor(ad.norm_stds[mod]).view(1, -1, 1, 1, 1)
        out[mod] = (x - mean) / std
    return out


class ChipDataset(Dataset):
    """Samples as terratorch batches: {"image": {modality: [C, T, H, W]}, "mask": int64 [H, W]}."""

    def __init__(self, samples: list[ChipSample], config: PipelineConfig, adapter: str, flips: bool = False,
                 seed: int = 0) -> None:
        self.samples = samples
        self.ad = config.infer.adapters[adapter]
        self.tcfg = config.train.adapters[adapter]
        self.fallback = config.infer.fill_fallback
        self.timesteps = config.acquire.timesteps
        self.lattice = Lattice.from_config(config.grid)
        self.flips = flips
        self.rng = np.random.default_rng(seed)
        self._stores: dict[str, StackStore] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def raw_inputs(self, i: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Un-normalised model inputs [1, ...] of sample ``i`` and its S2-validity mask [H, W]."""
        s = self.samples[i]
        if s.stack_path not in self._stores:
            self._stores[s.stack_path] = StackStore(s.stack_path, self.lattice)
        block = self._stores[s.stack_path].read(s.box)
        size = self.lattice.chip_size_px
        return assemble_batch(block, [(0, 0)], size, self.fallback), pixels_with_s2(block)

    def __getitem__(self, i: int) -> dict[str, Any]:
        raw, has_s2 = self.raw_inputs(i)
        x = {m: t[0] for m, t in normalize(raw, self.ad, self.timesteps).items()}
        mask = torch.from_numpy(self.samples[i].labels.astype(np.int64))
        mask[~torch.from_numpy(has_s2)] = self.tcfg.ignore_index
        if self.flips:
            for dim in (-2, -1):
                if self.rng.random() < 0.5:
                    x = {m: t.flip(dim) for m, t in x.items()}
                    mask = mask.flip(dim)
        return {"image": {m: t.contiguous() for m, t in x.items()}, "mask": mask.contiguous()}
