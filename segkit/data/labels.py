"""What a dataset's labels are: the task it is for (``dataset_task_info``), its class names
(``read_class_names`` for a ``classes.txt``, ``check_class_names``) and its index masks checked
(``class_ids_from_mask``, ``check_index_mask_mode``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segkit.data.pairs import MAX_LISTED
from segkit.data.transforms import IGNORE_INDEX, TASKS
from segkit.errors import DataError
from segkit.task.palette import check_palette, default_palette

#: Most classes a multiclass dataset may have: ids 0..254 fit in a uint8 mask below ``IGNORE_INDEX``.
MAX_CLASSES = IGNORE_INDEX
#: Mask image modes whose pixel values are label values (greyscale, palette indices, 1-bit, 16-bit).
INDEX_MASK_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16L", "I;16B", "I;16N", "LA", "La", "PA"})


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a text file, one per line in id order (the first line is id 0).

    Surrounding whitespace is stripped; blank lines and lines starting with ``#`` are ignored.
    Raises ``DataError`` naming the file when it is missing or unreadable, names no class, names one
    twice (with both line numbers), or names more than ``MAX_CLASSES``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"class names file {path} does not exist" + (" (it is a folder)" if path.is_dir() else "")
        )
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read class names file {path}: {error}") from None
    names: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in names:
            raise DataError(
                f"class names file {path} names {name!r} twice (lines {names[name]} and {number}); "
                "class names must be distinct"
            )
        names[name] = number
    if not names:
        raise DataError(f"class names file {path} is empty: it names no class (one name per line)")
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"class names file {path} names {len(names)} classes; at most {MAX_CLASSES} fit in an 8-bit mask "
            f"({IGNORE_INDEX} means ignore)"
        )
    return list(names)


def check_class_names(names: Any, task: str, where: str = "dataset") -> list[str]:
    """``names`` as a list of distinct, non-empty, stripped str, as many as ``task`` allows.

    Binary: ``None`` or one name (``["foreground"]`` when ``None``); multiclass: 2 to
    ``MAX_CLASSES`` names; multilabel: at least one. Raises ``DataError`` naming ``where``.
    """
    if names is None and task == "binary":
        return ["foreground"]
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise DataError(f"{where}: class_names must be a list of str, got {names!r}")
    checked: list[str] = []
    for name in names:
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise DataError(f"{where}: class name {name!r} is not a non-empty str without surrounding spaces")
        if name in checked:
            raise DataError(f"{where}: class name {name!r} appears twice in {list(names)}")
        checked.append(name)
    least, most = {"binary": (1, 1), "multiclass": (2, MAX_CLASSES), "multilabel": (1, None)}[task]
    if len(checked) < least or (most is not None and len(checked) > most):
        wanted = (
            f"exactly {least}"
            if least == most
            else f"at least {least}" + (f" and at most {most}" if most else "")
        )
        raise DataError(f"{where}: a {task} task needs {wanted} class name(s), got {len(checked)}: {checked}")
    return checked


def dataset_task_info(dataset: Any) -> dict[str, Any]:
    """What a dataset says about its task, with defaults and checks, for the engine and checkpoints.

    Returns ``{"task", "class_names", "palette", "ignore_index"}``: ``task`` from the dataset's
    ``task`` attribute ("binary" when absent); ``class_names`` from ``class_names``
    (``["foreground"]`` for a binary dataset without them); ``palette`` from ``palette`` or
    ``default_palette``; ``ignore_index`` the mask value meaning "ignore" in multiclass items
    (the dataset's ``ignore_index``, ``IGNORE_INDEX`` = 255 by default) and ``None`` for binary and
    multilabel datasets, whose ignore arrives as the separate ``"ignore"`` item. Raises ``DataError``
    when an attribute is malformed (unknown task, duplicate names, a palette of the wrong length, ...).
    """
    where = f"dataset {type(dataset).__name__}"
    task = getattr(dataset, "task", "binary")
    if task not in TASKS:
        raise DataError(f"{where} asks for a {task!r} task; known tasks: {', '.join(TASKS)}")
    class_names = check_class_names(getattr(dataset, "class_names", None), task, where)
    palette = getattr(dataset, "palette", None)
    palette = (
        default_palette(class_names, task)
        if palette is None
        else check_palette(palette, len(class_names), where)
    )
    ignore_index = None
    if task == "multiclass":
        ignore_index = getattr(dataset, "ignore_index", IGNORE_INDEX)
        if (
            isinstance(ignore_index, bool)
            or not isinstance(ignore_index, (int, np.integer))
            or 0 <= ignore_index < len(class_names)
        ):
            raise DataError(
                f"{where}: ignore_index must be an integer that is not a class id "
                f"(0..{len(class_names) - 1}), got {ignore_index!r}"
            )
        ignore_index = int(ignore_index)
    return {"task": task, "class_names": class_names, "palette": palette, "ignore_index": ignore_index}


def class_ids_from_mask(raw: np.ndarray, path: Path, num_classes: int) -> np.ndarray:
    """A raw index mask as uint8 class ids, checked: every value must be below ``num_classes`` or be
    ``IGNORE_INDEX``; anything else is a ``DataError`` naming the file and the values."""
    counts = np.bincount(raw.ravel(), minlength=IGNORE_INDEX + 1) if raw.size else np.zeros(1, dtype=np.int64)
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != IGNORE_INDEX)]
    if bad.size:
        listed = ", ".join(str(value) for value in bad[:MAX_LISTED].tolist())
        more = ", ..." if bad.size > MAX_LISTED else ""
        raise DataError(
            f"mask {path} holds value(s) {{{listed}{more}}}, which are not class ids: this dataset has "
            f"{num_classes} classes (ids 0..{num_classes - 1}) and {IGNORE_INDEX} means ignore"
        )
    return raw.astype(np.uint8)


def check_index_mask_mode(
    path: Path, role: str = "mask", num_classes: int | None = None, mode: str | None = None
) -> None:
    """A ``DataError`` unless the (already checked) mask file is an index image: greyscale or palette.

    ``mode``: the file's Pillow mode when already known; otherwise the header is read. Colour masks
    (RGB, RGBA, ...) hold colours, not class ids.
    """
    if mode is None:
        try:
            with Image.open(path) as image:
                mode = image.mode
        except Exception:  # noqa: BLE001 - check_image_file vetted the file; reading it reports any problem
            return
    if mode not in INDEX_MASK_MODES:
        ids = f"0..{num_classes - 1}" if num_classes else "0..K-1"
        raise DataError(
            f"{role} {path} is a colour ({mode}) image, but this multiclass dataset needs class ids: convert "
            f"it to an index mask, an 8-bit greyscale or palette PNG whose pixel values are the class ids "
            f"({ids}, {IGNORE_INDEX} = ignore)"
        )
