"""The run's data: its splits as datasets, their loaders, and the training split's image size over time."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

import segkit
from segkit.engine import distributed
from segkit.engine.schedule import train_image_size
from segkit.errors import DataError


def build_split(values: dict[str, Any], split: str, image_size: int):
    """One split at ``image_size``: train with the chosen augmentation, the others with none."""
    name = values["dataset"]
    options = {"image_size": image_size, **values["dataset_options"]}
    if values["data_path"] is not None:
        options["root"] = values["data_path"]
    augment = options.pop("augment", values["augment"])
    dataset = segkit.create_dataset(
        name, split=split, augment=augment if split == "train" else "none", **options
    )
    if len(dataset) == 0:
        raise DataError(f"the {split} split of dataset {name!r} is empty")
    return dataset


def resolve_workers(requested: Any, dataset: Any, device: torch.device) -> int:
    if requested != "auto":
        return int(requested)
    if getattr(dataset, "in_memory", False):
        return 0  # generated or cached in memory: worker processes would only add start-up and copies
    cores = os.cpu_count() or 1
    return min(4, max(1, cores - 1)) if device.type == "cpu" else min(8, cores)


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    device: torch.device,
    seed: int,
    group: distributed.ProcessGroup = distributed.ProcessGroup(),
):
    """Training loaders shuffle with a per-epoch seed; under torchrun each process takes its shard."""
    generator = torch.Generator().manual_seed(seed)
    sampler: DistributedSampler[Any] | None = None
    if group.enabled:
        batch_size = max(1, batch_size // group.world_size)  # --batch-size stays the global batch
        if shuffle:
            sampler = DistributedSampler(
                dataset, group.world_size, group.rank, shuffle=True, seed=seed, drop_last=True
            )
        else:
            dataset = Subset(dataset, distributed.shard_indices(len(dataset), group))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=shuffle and len(dataset) > batch_size,
        persistent_workers=False,
        generator=generator,
    )


class RunData:
    """The train and valid splits of a run. The train split follows progressive resizing: ask
    ``train_set_at(progress)`` at each epoch's start; it is rebuilt when the stage changes."""

    def __init__(self, values: dict[str, Any], device: torch.device, group: distributed.ProcessGroup) -> None:
        self.values, self.device, self.group = values, device, group
        self.train_size = self._size_at(0.0)
        self.train_set = build_split(values, "train", self.train_size)
        self.valid_set = build_split(values, "valid", values["image_size"])
        self.workers = resolve_workers(values["workers"], self.train_set, device)

    def _size_at(self, progress: float) -> int:
        return train_image_size(self.values["progressive_sizes"], self.values["image_size"], progress)

    def train_set_at(self, progress: float):
        size = self._size_at(progress)
        if size != self.train_size:  # progressive resizing: the next stage starts with this epoch
            self.train_size, self.train_set = size, build_split(self.values, "train", size)
        return self.train_set

    def micro_batches_per_epoch(self) -> int:
        return max(1, len(self.train_set) // self.values["batch_size"])

    def train_loader(self, seed: int):
        return make_loader(
            self.train_set, self.values["batch_size"], True, self.workers, self.device, seed, self.group
        )

    def valid_loader(self):
        values = self.values
        return make_loader(
            self.valid_set, values["batch_size"], False, self.workers, self.device, values["seed"], self.group
        )
