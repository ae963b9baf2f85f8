"""K-fold splits: the photos a run may learn from (the dataset's train and valid splits together) cut
into K folds, deterministically from a seed and stratified, and the fold runs' train and valid splits.

A photo is known by a key, ``"<split>:<name>"`` (``"train:cat1"``, ``"valid:dog7"``): its split in the
dataset and its name there. ``assign_folds`` deals the keys into folds; ``photo_strata`` says which
stratum each photo belongs to (binary: whether it holds foreground; multiclass and multilabel: the
rarest class it holds, rarest by the number of photos holding it); ``fold_split`` builds fold ``i``'s
training split (every photo outside fold ``i``, augmented as the dataset's train split is) or its
held-out split (fold ``i``, never augmented), which the fold run validates on.

The assignment depends only on the set of keys, their strata, K and the seed: not on the order a
dataset lists its photos. The folder dataset's ``split_seed`` decides which photos are test photos
(and which are valid, which no longer matters: train and valid are pooled); the fold seed (the run's
``--seed``) decides the folds inside the pool.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from segkit.errors import DataError, SegkitError, UsageError

#: The dataset's splits pooled into folds, in this order.
POOLED_SPLITS = ("train", "valid")
#: Fewest folds that make sense, and most.
MIN_FOLDS, MAX_FOLDS = 2, 20
#: The stratum of a photo holding no foreground (binary) or no class but the background.
EMPTY = "none"

#: ``make(split, train)``: the dataset's ``split``, built as for training (augmented) or as for
#: evaluation; raises ``SegkitError`` when the dataset has no such split.
MakeSplit = Callable[[str, bool], Any]


def photo_key(split: str, name: str) -> str:
    return f"{split}:{name}"


def check_fold_count(folds: int) -> int:
    if isinstance(folds, bool) or not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise UsageError(f"--folds must be a whole number from {MIN_FOLDS} to {MAX_FOLDS}, got {folds!r}")
    return folds


def assign_folds(strata: dict[str, str], folds: int, seed: int) -> dict[str, int]:
    """``{key: fold}`` for every key of ``strata`` (``{key: stratum}``): within each stratum (in sorted
    order) the keys, sorted then shuffled by ``seed``, are dealt one per fold in turn, the turn going
    on from one stratum to the next, so each stratum's photos and all photos spread over the folds
    with counts differing by at most one."""
    check_fold_count(folds)
    if len(strata) < folds:
        raise DataError(f"{len(strata)} photos cannot be cut into {folds} folds (each fold needs one)")
    rng = random.Random(seed)
    assignment: dict[str, int] = {}
    turn = 0
    by_stratum: dict[str, list[str]] = {}
    for key, stratum in strata.items():
        by_stratum.setdefault(stratum, []).append(key)
    for stratum in sorted(by_stratum):
        keys = sorted(by_stratum[stratum])
        rng.shuffle(keys)
        for key in keys:
            assignment[key] = turn % folds
            turn += 1
    return assignment


def pooled_splits(make: MakeSplit, train: bool) -> list[tuple[str, Any]]:
    """``[(split, dataset)]`` of the pooled splits the dataset has (train always; valid where it has
    one that is not empty)."""
    parts = []
    for split in POOLED_SPLITS:
        try:
            dataset = make(split, train)
        except SegkitError:
            if split == "train":
                raise
            continue
        if len(dataset) > 0:
            parts.append((split, dataset))
    return parts


def split_names(dataset: Any) -> list[str]:
    """The names of a split's photos, in item order."""
    names = getattr(dataset, "names", None)
    if names is not None:
        return list(names)
    return [str(dataset[index]["name"]) for index in range(len(dataset))]


def _labels_present(dataset: Any, index: int, kind: str) -> set[int]:
    """The classes (labels) a photo holds, 0 (background) left out for a multiclass task; ``{1}`` or
    ``set()`` for a binary one. Read from its mask at original size where the dataset can."""
    if hasattr(dataset, "original_mask"):
        mask, ignore = dataset.original_mask(index)
        mask = np.asarray(mask)
        ignore = None if ignore is None else np.asarray(ignore)
    else:
        item = dataset[index]
        mask = item["mask"].numpy()
        ignore = item["ignore"].numpy() if "ignore" in item else None
    if kind == "multiclass":
        valid = mask if ignore is None else mask[~ignore.reshape(mask.shape)]
        return {int(value) for value in np.unique(valid)} - {0, 255}
    if kind == "multilabel":
        labels = mask.reshape(mask.shape[-3] if mask.ndim == 3 else 1, -1) > 0.5
        if ignore is not None:
            labels &= ~ignore.reshape(labels.shape)
        return {int(channel) for channel in np.flatnonzero(labels.any(axis=1))}
    present = mask > 0.5
    if ignore is not None:
        present &= ~ignore.reshape(present.shape)
    return {1} if present.any() else set()


def photo_strata(parts: Sequence[tuple[str, Any]], kind: str) -> dict[str, str]:
    """``{key: stratum}`` for the photos of ``parts`` (un-augmented splits): for a binary task
    "foreground" or "none"; for the others the name of the rarest class the photo holds (rarest by
    the number of photos holding it, ties to the lower id), or "none"."""
    present: dict[str, set[int]] = {}
    for split, dataset in parts:
        for index, name in enumerate(split_names(dataset)):
            present[photo_key(split, name)] = _labels_present(dataset, index, kind)
    if kind == "binary":
        return {key: ("foreground" if classes else EMPTY) for key, classes in present.items()}
    counts = Counter(label for classes in present.values() for label in classes)
    names = list(getattr(parts[0][1], "class_names", None) or [])
    strata = {}
    for key, classes in present.items():
        if not classes:
            strata[key] = EMPTY
            continue
        rarest = min(classes, key=lambda label: (counts[label], label))
        strata[key] = names[rarest] if rarest < len(names) else str(rarest)
    return strata


class FoldSubset(Dataset):
    """Photos picked from several splits (``[(dataset, index)]``), for datasets that are not lists of
    file pairs (generated ones). Other attributes are the first split's."""

    def __init__(self, picks: Sequence[tuple[Any, int]], names: Sequence[str]) -> None:
        self.picks, self._names = list(picks), list(names)

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        dataset, inner = self.picks[index]
        return dataset[inner]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def original_mask(self) -> Callable[[int], Any]:
        """The splits' ``original_mask`` where they have one (an AttributeError where not, as for them)."""
        if not hasattr(self.picks[0][0], "original_mask"):
            raise AttributeError("original_mask")

        def read(index: int) -> Any:
            dataset, inner = self.picks[index]
            return dataset.original_mask(inner)

        return read

    def __getattr__(self, name: str) -> Any:
        if name in ("picks", "_names"):
            raise AttributeError(name)
        return getattr(self.picks[0][0], name)


def _select(parts: Sequence[tuple[str, Any]], keep: Callable[[str], bool]) -> Any:
    """The photos of ``parts`` whose key ``keep`` accepts, as one dataset: for datasets of file pairs a
    copy of the first split's dataset holding the chosen pairs (its transform, classes and statistics
    kept), else a ``FoldSubset``."""
    picks = [
        (split, dataset, index, name)
        for split, dataset in parts
        for index, name in enumerate(split_names(dataset))
        if keep(photo_key(split, name))
    ]
    if not picks:
        raise DataError("a fold holds no photos")
    first = parts[0][1]
    if all(hasattr(dataset, "pairs") and hasattr(dataset, "image_sizes") for _, dataset in parts):
        chosen = copy.copy(first)
        chosen.pairs = [dataset.pairs[index] for _, dataset, index, _ in picks]
        chosen.image_sizes = [dataset.image_sizes[index] for _, dataset, index, _ in picks]
        chosen.decoded_cache = None
        return chosen
    return FoldSubset([(dataset, index) for _, dataset, index, _ in picks], [name for *_, name in picks])


def fold_split(make: MakeSplit, split: str, fold: dict[str, Any]) -> Any:
    """Fold ``fold["index"]``'s ``split``: "train" is every pooled photo outside the fold, built as the
    dataset builds its train split; "valid" the fold's own photos (``fold["held_out"]``, keys), built
    for evaluation. Other splits (test) are the dataset's own."""
    if split not in POOLED_SPLITS:
        return make(split, False)
    held_out = set(fold["held_out"])
    training = split == "train"
    parts = pooled_splits(make, training)
    known = {photo_key(s, name) for s, dataset in parts for name in split_names(dataset)}
    missing = held_out - known
    if missing:
        raise DataError(
            f"fold {fold['index']} holds {len(missing)} photo(s) the dataset no longer has "
            f"(first: {sorted(missing)[0]}); the folds were cut from other data"
        )
    return _select(parts, (lambda key: key not in held_out) if training else (lambda key: key in held_out))


def fold_record(assignment: dict[str, int], index: int, folds: int, seed: int) -> dict[str, Any]:
    """What a fold run keeps of its fold (``fold.json``, its checkpoints): enough to rebuild its splits."""
    return {
        "index": index,
        "folds": folds,
        "seed": seed,
        "held_out": sorted(key for key, fold in assignment.items() if fold == index),
    }


def strata_table(strata: dict[str, str], assignment: dict[str, int], folds: int) -> dict[str, list[int]]:
    """``{stratum: [photos in fold 0, fold 1, ...]}``: how the strata spread over the folds."""
    table: dict[str, list[int]] = {}
    for key, stratum in strata.items():
        table.setdefault(stratum, [0] * folds)[assignment[key]] += 1
    return dict(sorted(table.items()))
