"""The run's data: its splits as datasets, their loaders, and the training split's image size over time."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from segkit.data.decoded_cache import DecodedCache
from segkit.data.sampling import Sampling
from segkit.data.splits import build_split, resolve_workers
from segkit.engine import distributed
from segkit.engine.schedule import train_image_size
from segkit.errors import UsageError


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
    ``train_set_at(progress)`` at each epoch's start; it is rebuilt when the stage changes.

    With ``crop_size`` the train split is cut into random crops at native resolution (progressive
    sizes are then crop sizes) and the valid split is whole photos at native resolution, loaded one
    at a time (they differ in size) and scored through tiles."""

    def __init__(
        self,
        values: dict[str, Any],
        device: torch.device,
        group: distributed.ProcessGroup,
        fold: dict[str, Any] | None = None,
    ) -> None:
        if group.enabled and values["batch_size"] % group.world_size:
            # Each process would take batch // processes: the run would train on a smaller batch than asked.
            batch, processes = values["batch_size"], group.world_size
            lower, higher = batch // processes * processes, -(-batch // processes) * processes
            raise UsageError(
                f"--batch-size {batch} is the batch of all {processes} processes together and must divide "
                f"among them: use {' or '.join(str(b) for b in (lower, higher) if b > 0)}"
            )
        self.values, self.device, self.group, self.fold = values, device, group, fold
        self.decoded: DecodedCache | None = None
        self.crops = values.get("crop_size") is not None
        self.train_size = self._size_at(0.0)
        self.train_set = self._train_split(self.train_size)
        valid_sampling = Sampling.native(values["scale"]) if self.crops else None
        self.valid_set = build_split(values, "valid", values["image_size"], valid_sampling, fold)
        self.workers = resolve_workers(values["workers"], self.train_set, device)
        # Read every epoch in this process: decode each photo once (the train split's rebuilds at each
        # progressive size share the cache). Loader workers would each fill a copy and lose it.
        if self.workers == 0:
            self.decoded = DecodedCache()
            for dataset in (self.train_set, self.valid_set):
                self._keep_decoded(dataset)

    def _size_at(self, progress: float) -> int:
        final = self.values["crop_size"] if self.crops else self.values["image_size"]
        return train_image_size(self.values["progressive_sizes"], final, progress)

    def _train_sampling(self, size: int) -> Sampling | None:
        if not self.crops:
            return None
        return Sampling.crops(size, self.values["scale"], self.values["foreground_fraction"])

    def _keep_decoded(self, dataset: Any) -> None:
        inner = getattr(dataset, "dataset", dataset)  # RepeatedCrops holds the split
        if self.decoded is not None and hasattr(inner, "decoded_cache"):
            inner.decoded_cache = self.decoded

    def _train_split(self, size: int):
        dataset = build_split(self.values, "train", size, self._train_sampling(size), self.fold)
        self._keep_decoded(dataset)
        if not self.crops:
            return dataset
        # Counted at the final crop size, so every stage of progressive sizes has as many steps.
        return RepeatedCrops(dataset, crops_per_photo(dataset, self.values["crop_size"]))

    def train_set_at(self, progress: float):
        size = self._size_at(progress)
        if size != self.train_size:  # progressive resizing: the next stage starts with this epoch
            self.train_size = size
            self.train_set = self._train_split(size)
        return self.train_set

    def micro_batches_per_epoch(self) -> int:
        return max(1, len(self.train_set) // self.values["batch_size"])

    def train_loader(self, seed: int):
        return make_loader(
            self.train_set, self.values["batch_size"], True, self.workers, self.device, seed, self.group
        )

    def valid_loader(self):
        values = self.values
        batch_size = 1 if self.crops else values["batch_size"]  # native photos differ in size
        return make_loader(
            self.valid_set, batch_size, False, self.workers, self.device, values["seed"], self.group
        )


#: At most this many crops of one photo per epoch (a 20000x20000 photo would otherwise be one epoch).
MAX_CROPS_PER_PHOTO = 64


def crops_per_photo(dataset: Any, size: int, sample: int = 8) -> int:
    """How many crops of ``size`` cover a photo of the split once on average: the area of the first
    few photos (read from their masks on disk) over the crop's, between 1 and MAX_CROPS_PER_PHOTO."""
    original_mask = getattr(dataset, "original_mask", None)
    if original_mask is None:
        return 1
    areas = []
    for index in range(min(sample, len(dataset))):
        mask, _ = original_mask(index)
        areas.append(int(mask.shape[-2]) * int(mask.shape[-1]))
    scale = getattr(getattr(dataset, "transform", None), "sampling", None)
    factor = scale.scale**2 if scale is not None else 1.0
    return max(1, min(MAX_CROPS_PER_PHOTO, round(sum(areas) / len(areas) * factor / size**2)))


class RepeatedCrops(torch.utils.data.Dataset):
    """A training split whose photos each give ``repeats`` random crops per epoch (each item is cut
    afresh), so an epoch covers about every pixel once instead of one crop per photo."""

    def __init__(self, dataset: Any, repeats: int) -> None:
        self.dataset, self.repeats = dataset, repeats

    def __len__(self) -> int:
        return len(self.dataset) * self.repeats

    def __getitem__(self, index: int):
        return self.dataset[index % len(self.dataset)]

    def __getattr__(self, name: str) -> Any:  # normalization, task, class_names, ... of the split
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)
