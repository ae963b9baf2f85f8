"""The common dataset signature, ``factory(root=None, split="train", image_size=256, augment=None,
**options)``: its options declared for a factory's option spec (``ROOT``, ``SPLIT``, ``IMAGE_SIZE``,
``AUGMENT``, ``STRICT``, ``SAMPLING``, and ``PAIRED_DATASET_OPTIONS``, the ones the engine sets), and
their checks and defaults (``check_root``, ``check_split``, ``default_augment``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from segkit.config.component_options import (
    Option,
    Parser,
    boolean,
    choice,
    int_at_least,
    parse_component_options,
)
from segkit.config.component_options import path as path_parser
from segkit.config.component_options import text as text_parser
from segkit.data.sampling import Sampling
from segkit.data.transforms import MIN_IMAGE_SIZE
from segkit.errors import UsageError

SPLITS = ("train", "valid", "test")

# -- the options of the common dataset signature, for a factory's option spec ----------------------
ROOT = Option(
    None,
    # Not ``optional(path)``: a folder may be called "none".
    Parser(lambda value: None if value is None else path_parser(value), "a folder"),
    help="the folder holding the data",
)
SPLIT = Option("train", choice(*SPLITS), help="which part of the data")
IMAGE_SIZE = Option(256, int_at_least(MIN_IMAGE_SIZE), help="side of the square images the network sees")


def _augment(value: Any) -> str | None:
    # Not ``optional(text)``: "none" is a pipeline's name here, not a missing value.
    return None if value is None else text_parser(value)


AUGMENT = Option(
    None,
    Parser(_augment, "the name of an augmentation pipeline"),
    help='augmentation pipeline; unset: "default" to train, "none" otherwise',
)
STRICT = Option(False, boolean, help="make unreadable files an error instead of skipping them")


def _sampling(value: Any) -> Any:

    if value is None or isinstance(value, Sampling):
        return value
    raise TypeError(f"not a segkit.data.sampling.Sampling: {value!r}")


#: How photos become samples (resized whole, or cropped at native resolution): set by the engine
#: from --crop-size, --scale and --foreground-fraction; see ``segkit.data.sampling``.
SAMPLING = Option(
    None, Parser(_sampling, "a segkit.data.sampling.Sampling, or None to resize"), help="set by the engine"
)

#: The options every paired-image dataset takes, which the engine sets from the run's settings
#: (--data-path, the split, --image-size, --augment, --crop-size): a dataset's ``OPTIONS`` starts with
#: them and adds its own, ``{**PAIRED_DATASET_OPTIONS, "strict": STRICT, ...}``.
PAIRED_DATASET_OPTIONS = {
    "root": ROOT,
    "split": SPLIT,
    "image_size": IMAGE_SIZE,
    "augment": AUGMENT,
    "sampling": SAMPLING,
}


def default_augment(augment: str | None, split: str) -> str:
    """The pipeline a dataset uses when none is named: "default" to train, "none" to evaluate."""
    if augment is None:
        return "default" if split == "train" else "none"
    return augment


def check_root(root: str | Path | None, dataset: str) -> Path:
    """``root`` as a ``Path`` to an existing folder, else a ``UsageError`` (exit code 2): not given,
    missing, or a file. A path that names nothing is a usage error, as click makes it for a missing
    path argument; a folder that exists but holds bad files is a ``DataError`` (exit code 1), which
    the dataset raises when it reads them."""
    if root is None:
        raise UsageError(f"dataset {dataset!r} needs root=DIR, the folder holding the data")
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"{dataset} root folder {root} is not a folder (it is a file)")
    if not root.is_dir():
        raise UsageError(f"{dataset} root folder {root} does not exist")
    return root


def check_split(split: Any, dataset: str = "dataset") -> str:
    """``split`` if it is one of ``SPLITS``, else a ``UsageError`` (what the ``SPLIT`` option checks)."""
    return parse_component_options("dataset", dataset, {"split": split}, {"split": SPLIT})["split"]
