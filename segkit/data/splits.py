"""A dataset split as a run builds it: the registered dataset with the run's options (train augmented,
the others not), its errors in the words of the flags that set them, and how many loader processes
read it; and the split a trained model is scored on. The engine, the planner, evaluate, report and
the trackers build their splits here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from segkit.components import create_dataset, get_component
from segkit.config.options import parse_options
from segkit.data.folds import fold_split
from segkit.data.sampling import Sampling
from segkit.errors import DataError, SegkitError, UsageError

#: How dataset messages name the options the engine fills from flags, and how a user types them.
_FLAG_WORDS = (
    ("needs root=DIR", "needs --data-path DIR"),
    ("option 'root'", "--data-path"),
    ("option 'image_size'", "--image-size"),
    ("option 'augment'", "--augment"),
    ("option 'split'", "--split"),
    ("did you mean root=", "did you mean --data-path "),
)


def in_flag_words(message: str) -> str:
    """A dataset's message about its ``root`` (or ``image_size``, ``augment``, ``split``) option, in the
    words of the flag that set it: "dataset 'folder' needs --data-path DIR", not "needs root=DIR"."""
    for words, flag in _FLAG_WORDS:
        message = message.replace(words, flag)
    return message


def build_split(
    values: dict[str, Any],
    split: str,
    image_size: int,
    sampling: Sampling | None = None,
    fold: dict[str, Any] | None = None,
):
    """One split at ``image_size``: train with the chosen augmentation, the others with none.
    ``sampling`` (crops or whole photos at native resolution) is passed on when given. ``fold`` (a
    fold run's ``segkit.data.folds.fold_record``): train and valid are the fold's (see
    ``segkit.data.folds.fold_split``)."""
    name = values["dataset"]
    options = {"image_size": image_size, **values["dataset_options"]}
    if values["data_path"] is not None:
        options["root"] = values["data_path"]
    if sampling is not None:
        accepted = get_component("dataset", name).metadata.get("options")
        if accepted is not None and "sampling" not in accepted:
            raise UsageError(
                f"dataset {name!r} cannot crop or tile at native resolution (its factory takes no "
                "'sampling' option); leave out --crop-size"
            )
        options["sampling"] = sampling
    augment = options.pop("augment", values["augment"])

    def make(part: str, train: bool):
        try:
            return create_dataset(name, split=part, augment=augment if train else "none", **options)
        except SegkitError as error:
            raise type(error)(in_flag_words(str(error))) from None

    dataset = make(split, split == "train") if fold is None else fold_split(make, split, fold)
    if len(dataset) == 0:
        raise DataError(f"the {split} split of dataset {name!r} is empty")
    return dataset


#: CPUs at or below which training on the CPU loads its data in its own process: a worker process
#: would take a core from the training threads (resnet18_unet at 96 px on 2 cores: 26 images/s with
#: one worker, 30 with none, 33 with none and the photos kept decoded).
FEW_CORES = 2


def resolve_workers(requested: Any, dataset: Any, device: torch.device) -> int:
    if requested != "auto":
        return int(requested)
    if getattr(dataset, "in_memory", False):
        return 0  # generated or cached in memory: worker processes would only add start-up and copies
    cores = os.cpu_count() or 1
    if device.type == "cpu":
        return 0 if cores <= FEW_CORES else min(4, cores - 1)
    return min(8, cores)


#: Dataset options an evaluation sets itself, and where they come from instead.
SET_BY_EVALUATION = {
    "root": "the dataset's folder is --data-path DIR (default: the run's)",
    "split": "the split is --split",
    "image_size": "the image size is the checkpoint's, the size the model was trained at",
    "augment": "evaluation never augments",
}


def evaluation_split(
    trained: Any,
    split: str,
    dataset: str | None,
    data_path: Any,
    dataset_option: Any,
    tiling: dict[str, Any] | None = None,
):
    """``(name, dataset)`` to score a trained model (``segkit.inference.predictor.TrainedModel``) on:
    the run's dataset unless ``dataset`` names another, with the run's options and ``dataset_option``
    (``KEY=VALUE`` strings) over them; with ``tiling``, whole photos at native resolution (after the
    run's scale). A fold run's train and valid splits are its fold's (its checkpoint's ``fold``). What
    evaluate, report and the trackers score on."""

    recorded = trained.checkpoint.get("config") or {}
    name = dataset or trained.checkpoint.get("dataset") or recorded.get("dataset")
    if not isinstance(name, str):
        raise DataError(f"{trained.path} does not say which dataset it was trained on: give --dataset")
    options = dict(recorded.get("dataset_options") or {}) if name == recorded.get("dataset") else {}
    given = parse_options(dataset_option, "--dataset-option")
    for key in set(given) & set(SET_BY_EVALUATION):
        raise UsageError(f"--dataset-option {key}: {SET_BY_EVALUATION[key]}")
    for key in SET_BY_EVALUATION:  # a run recorded before they were refused at training
        options.pop(key, None)
    options.update(given)
    root = data_path if data_path is not None else recorded.get("data_path")
    if data_path is None and root is not None and not Path(root).is_dir():
        raise DataError(
            f"the data folder {root} that {trained.path} was trained on no longer exists there; "
            "give its new place with --data-path DIR (it overrides the run's)"
        )
    if root is not None:
        options["root"] = root
    if tiling is not None:
        options["sampling"] = Sampling.native(tiling["scale"])
    fold = trained.checkpoint.get("fold") if name == recorded.get("dataset") else None

    def make(part: str, _train: bool):
        return create_dataset(name, split=part, image_size=trained.image_size, augment="none", **options)

    try:
        data = make(split, False) if fold is None else fold_split(make, split, fold)
    except SegkitError as error:
        message = in_flag_words(str(error))
        if "ensemble" in trained.checkpoint and split == "test":  # a --folds parent
            message += (
                "; without test photos the folds' out-of-fold scores (folds.json) are the ensemble's estimate"
            )
        elif split == "test" and "test" in message and "--split valid" not in message:
            message += "; to score the validation split instead: --split valid"
        raise type(error)(message) from None
    if len(data) == 0:
        hint = " (score the validation split with --split valid)" if split == "test" else ""
        raise UsageError(f"the {split} split of dataset {name!r} is empty{hint}")
    use_recorded_band_statistics(data, trained.normalization)
    classes = list(getattr(data, "class_names", None) or ["foreground"])
    if trained.task.kind != "binary" and classes != list(trained.task.class_names):
        raise UsageError(
            f"{trained.path} was trained on {len(trained.task.class_names)} classes "
            f"({', '.join(trained.task.class_names)}); the {split} split of {name!r} has {len(classes)} "
            f"({', '.join(classes)})"
        )
    return name, data


def use_recorded_band_statistics(data: Any, recorded: dict[str, list[float]]) -> None:
    """Photos of other bands than 8-bit RGB are normalised with the statistics the model was trained
    with (its checkpoint's ``normalization``), not those of the folder being scored: scored on another
    folder, a dataset would otherwise compute that folder's own."""
    transform: Any = getattr(data, "transform", None)
    if getattr(transform, "normalization", None) is None:
        return  # 8-bit RGB photos: ImageNet's statistics, as in training
    data.normalization = recorded
    transform.normalization = recorded
