"""Dataset "label_studio": a Label Studio project's export of brush (and polygon) regions, read in place.

    ROOT/project-1-at-....json     the export: "JSON" (tasks with their annotations) or "JSON_MIN"
    ROOT/images/1a2b3c4d-cat.jpg   the photos the tasks name (data.image: /data/upload/1/1a2b3c4d-cat.jpg)
    ROOT/label_config.xml          the project's labeling config (Settings > Labeling Interface > Code)
    ROOT/masks/task-1-annotation-2-by-1-tag-Cat-0.png   (optional) the "Brush labels to PNG" export

Regions: ``brushlabels`` results (``format: "rle"``, Label Studio's bit-packed RLE of the RGBA layer,
decoded here: ``decode_rle``) and ``polygonlabels`` results (points in percent of the photo's width and
height; a pixel is inside when its centre is, by the even-odd rule). Other results (rectangles,
choices, ...) are left out. A brush pixel is painted where its alpha is at least 128 (the anti-aliased
edge of a stroke counts from half opacity). With ``masks=DIR`` the brush regions come from the PNG
export instead (one greyscale alpha PNG per region, named ``task-<task>-annotation-<annotation>-by-
<user>-<tag>-<label>-<n>.png``); the JSON still says which photo each task is and holds its polygons,
since the PNGs name only the task (Label Studio's advice: join the two on task and annotation ids).

Classes: class 0 is the background (unpainted pixels; a label named "background" in any case is it),
then the ``classes`` option's names, or else the labels of the labeling config's ``<BrushLabels>``,
``<PolygonLabels>`` and ``<Labels>`` tags in document order (``config=FILE``, default
ROOT/label_config.xml when it exists), or else the labels found in the export, sorted. A region whose
label is not among them is a ``DataError`` naming the file, task, annotation and region. Task
(``task``): "auto" is binary with one label and multiclass with more; "multilabel" keeps each label's
regions in their own mask. Overlapping regions of different labels: the label later in the class list
is on top (both exports keep that order; the PNG export loses the order regions were drawn in);
``task=multilabel`` keeps both.

Tasks: the latest annotation of a task is used (latest ``created_at``; the last listed when equal),
cancelled (skipped) ones left out; an annotation without regions is a background-only photo; a task
no one annotated is left out (the description counts them). Photos are found by file name in
``images/`` (``images=DIR``): the name is the last part of the URL's path, or of its ``?d=`` local-file
path; Label Studio's upload prefix ("1a2b3c4d-") is dropped when only the plain name is there. Photos not
found are one ``DataError`` naming them. Label Studio has no splits: the photos are split at random like
the folder dataset's (``valid_fraction``, ``test_fraction``, ``split_seed``).

Masks are rendered once into the data folder's cache (``segkit.datasets.rendered_masks``, keyed on the
export, the config, the PNGs and the photos) when the dataset is built, so a malformed region is a
``DataError`` before anything is trained: an RLE that does not hold width x height x 4 values, a
region drawn on an image of another size than its photo, a polygon of fewer than three points.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

import segkit
from segkit.component_options import Option, choice, optional, parse_component_options
from segkit.component_options import path as path_parser
from segkit.data.transforms import build_sample_transform
from segkit.datasets import (
    IMAGE_EXTENSIONS,
    MAX_LISTED,
    PAIRED_DATASET_OPTIONS,
    SPLITS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    class_ids_from_mask,
    default_augment,
    rendered_masks,
    shown_size,
)
from segkit.errors import DataError, UsageError
from segkit_builtin.folder import NAMES, random_split
from segkit_builtin.folder import OPTIONS as FOLDER_OPTIONS

CONFIG_FILE = "label_config.xml"
LABEL_TAGS = ("BrushLabels", "PolygonLabels", "Labels")
REGION_TYPES = ("brushlabels", "polygonlabels")
#: A brush pixel counts as painted from this alpha on.
PAINTED_ALPHA = 128
#: Label Studio prefixes uploaded files with 8 hex digits and a dash.
UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")
PNG_NAME = re.compile(r"^task-(?P<task>\d+)-annotation-(?P<annotation>\d+)-by-.*-(?P<n>\d+)\.png$")
RENDERER = "label_studio-1"
PATH = optional(path_parser)

OPTIONS = {
    **PAIRED_DATASET_OPTIONS,
    "valid_fraction": FOLDER_OPTIONS["valid_fraction"],
    "test_fraction": FOLDER_OPTIONS["test_fraction"],
    "split_seed": FOLDER_OPTIONS["split_seed"],
    "strict": STRICT,
    "annotations": Option(None, PATH, help="the export's JSON (default: the one *.json in ROOT)"),
    "images": Option(None, PATH, help="folder of the photos (default: ROOT/images)"),
    "masks": Option(None, PATH, help="folder of the 'Brush labels to PNG' export (default: the JSON's RLE)"),
    "config": Option(None, PATH, help=f"the labeling config XML (default: ROOT/{CONFIG_FILE} if there)"),
    "classes": Option(None, NAMES, help="label names in class order (instead of the labeling config)"),
    "task": Option(
        "auto",
        choice("auto", "multiclass", "multilabel"),
        help="auto: binary with one label, else multiclass; multilabel: a mask per label",
    ),
}


# -- Label Studio's brush RLE ------------------------------------------------------------------------------


def decode_rle(rle: Any) -> np.ndarray:
    """Label Studio's brush RLE (thi.ng's rle-pack, as label-studio-converter's ``brush.decode_rle``
    reads it) as a flat array: a 32-bit count, a 5-bit word size - 1, four 4-bit run-length sizes - 1,
    then runs: a flag bit (1: one word repeated), a 2-bit choice of run-length size, the length - 1,
    and the repeated word or that many words. Raises ``ValueError`` saying what is wrong."""
    bits = _Bits(_rle_bytes(rle))
    count, word_size = bits.read(32), bits.read(5) + 1
    run_sizes = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(count, np.uint8 if word_size <= 8 else np.uint16 if word_size <= 16 else np.uint32)
    start = 0
    while start < count:
        repeated = bits.read(1)
        end = start + 1 + bits.read(run_sizes[bits.read(2)])
        if end > count:
            raise ValueError(f"its rle runs past the {count} values it declares")
        if repeated:
            out[start:end] = bits.read(word_size)
        else:
            out[start:end] = [bits.read(word_size) for _ in range(end - start)]
        start = end
    return out


def rle_count(rle: Any) -> int:
    """How many values an RLE says it holds (its header), without decoding it."""
    return _Bits(_rle_bytes(rle)).read(32)


def _rle_bytes(rle: Any) -> bytes:
    try:
        if not isinstance(rle, (list, tuple)):
            raise TypeError
        return bytes(rle)
    except (TypeError, ValueError):
        raise ValueError("its rle is not a list of bytes (numbers 0-255)") from None


class _Bits:
    """Reads big-endian bit fields from bytes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.position = data, 0

    def read(self, size: int) -> int:
        end = self.position + size
        if end > len(self.data) * 8:
            raise ValueError("its rle ends early (a truncated export?)")
        first, last = self.position // 8, (end + 7) // 8
        window = int.from_bytes(self.data[first:last], "big")
        self.position = end
        return (window >> (last * 8 - end)) & ((1 << size) - 1)


# -- reading the export ------------------------------------------------------------------------------------


@dataclass
class Region:
    label: str
    kind: str  # "rle", "polygon" or "png"
    data: Any  # the RLE list, the points, or the PNG's path
    size: tuple[int, int] | None  # (width, height) the region was drawn on
    where: str  # "Label Studio export FILE, task 3, annotation 7, region 'abc'", for messages


@dataclass
class Task:
    task_id: Any
    annotation_id: Any
    photo: str
    regions: list[Region] = field(default_factory=list)


class LabelStudioDataset(PairedImageDataset):
    """Photos and the masks rendered from a Label Studio export's regions."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if self.task == "multiclass":
            return class_ids_from_mask(raw, path, len(self.class_names))
        return class_ids_from_mask(raw, path, 2)  # binary, and each multilabel plane: 0/1


def build_label_studio(root: str | Path | None = None, **options: Any) -> LabelStudioDataset:
    """A Label Studio export in ROOT (see the module docstring for the options and rules)."""
    parsed = parse_component_options("dataset", "label_studio", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "label_studio")
    split = parsed["split"]
    export = _export_file(root, parsed["annotations"])
    config = _within(root, parsed["config"]) if parsed["config"] is not None else root / CONFIG_FILE
    if parsed["config"] is not None and not config.is_file():
        raise UsageError(f"label_studio option config: {config} does not exist")
    config_labels, data_key = read_config(config) if config.is_file() else ([], "image")
    if parsed["classes"] is not None and parsed["config"] is not None:
        raise UsageError("label_studio options classes and config both name the classes; give one")

    tasks, unannotated = read_export(export, data_key)
    masks = _within(root, parsed["masks"]) if parsed["masks"] is not None else None
    if masks is not None:
        use_brush_pngs(tasks, masks, export)
    labels = _labels(root, parsed["classes"], config_labels, tasks)
    task_kind = parsed["task"]
    if task_kind == "auto":
        task_kind = "binary" if len(labels) == 1 else "multiclass"
    class_names = labels if task_kind == "multilabel" else ["background", *labels]
    class_of = {
        label: index for index, label in enumerate(labels, start=0 if task_kind == "multilabel" else 1)
    }
    for task in tasks:
        for region in task.regions:
            if region.label not in class_of and region.label.lower() != "background":  # background: unpainted
                raise DataError(
                    f"{region.where}: label {region.label!r} is not one of the classes ({', '.join(labels)})"
                )

    images = _within(root, parsed["images"]) if parsed["images"] is not None else root / "images"
    photos = find_photos(tasks, images, export)
    names = sorted(photos)
    by_name = {task.photo: task for task in tasks}  # find_photos named each task's photo by its stem

    def render(name: str) -> np.ndarray:
        return render_task(by_name[name], photos[name], class_of, task_kind, len(labels))

    sources = [export, *([config] if config.is_file() else []), *photos.values()]
    sources += [region.data for task in tasks for region in task.regions if region.kind == "png"]
    key = {"classes": class_names, "task": task_kind, "masks": str(masks)}
    rendered = rendered_masks(root, sources, RENDERER, key, names, render)
    parts = random_split(names, parsed["valid_fraction"], parsed["test_fraction"], parsed["split_seed"])
    chosen = parts[SPLITS.index(split)]
    multilabel = task_kind == "multilabel"
    pairs = [
        Pair(name, photos[name], rendered[name][0], channel_masks=tuple(rendered[name]) if multilabel else ())
        for name in chosen
    ]
    description = f"label_studio export {export} (split {split!r}, split_seed={parsed['split_seed']}; "
    description += f"{task_kind}: {', '.join(labels)})"
    if unannotated:
        description += f"; {unannotated} task(s) no one annotated left out"
    if not pairs:
        raise DataError(
            f"{description} is empty: {len(names)} photo(s) are too few for valid_fraction="
            f"{parsed['valid_fraction']}, test_fraction={parsed['test_fraction']}"
        )
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    return LabelStudioDataset(
        pairs,
        transform,
        strict=parsed["strict"],
        description=description,
        task=task_kind,
        class_names=labels if task_kind == "binary" else class_names,
        data_root=root,  # the file index beside the export, wherever the masks were rendered
    )


def _within(root: Path, path: Path) -> Path:
    """``path`` as given, or under ``root`` when it is relative and not found from here."""
    return root / path if not path.is_absolute() and not path.exists() and (root / path).exists() else path


def _export_file(root: Path, given: Path | None) -> Path:
    if given is not None:
        export = _within(root, given)
        if not export.is_file():
            raise UsageError(f"label_studio option annotations: {export} does not exist")
        return export
    found = sorted(path for path in root.glob("*.json") if not path.name.startswith("."))
    if len(found) != 1:
        held = (
            f"{len(found)} *.json files: " + ", ".join(path.name for path in found)
            if found
            else "no *.json file"
        )
        raise DataError(
            f"label_studio: {root} holds {held}; put the project's export (JSON or JSON_MIN) there, or "
            "choose it with annotations=FILE"
        )
    return found[0]


def read_config(path: Path) -> tuple[list[str], str]:
    """The labels of a labeling config's label tags in document order, and the ``data`` key of its
    ``<Image value="$image">`` (default "image")."""
    try:
        tree = ElementTree.parse(path)
    except (OSError, ElementTree.ParseError) as error:
        raise DataError(f"cannot read the labeling config {path}: {error}") from None
    labels: list[str] = []
    data_key = "image"
    for element in tree.iter():
        if element.tag == "Image" and element.get("value", "").startswith("$"):
            data_key = element.get("value", "")[1:]
        if element.tag in LABEL_TAGS:
            for label in element.iter("Label"):
                name = label.get("alias") or label.get("value")
                if name and name not in labels and name.lower() != "background":
                    labels.append(name)
    return labels, data_key


def read_export(path: Path, data_key: str) -> tuple[list[Task], int]:
    """The annotated tasks of a JSON or JSON_MIN export, each with its latest annotation, and how many
    tasks no one annotated."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"cannot read the Label Studio export {path}: {error}") from None
    items = [content] if isinstance(content, dict) else content
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise DataError(f"Label Studio export {path} is not a list of tasks (export as JSON or JSON_MIN)")
    latest: dict[Any, tuple] = {}
    seen: set[Any] = set()
    for position, item in enumerate(items):
        task_id = item.get("id", f"#{position}")
        seen.add(task_id)
        for created, *annotation in _annotations(item, data_key):
            if task_id not in latest or str(created) >= str(latest[task_id][0]):
                latest[task_id] = (created, *annotation)
    tasks = []
    for task_id, (_, annotation_id, photo, results) in latest.items():  # only the chosen are read
        task = Task(task_id, annotation_id, _photo(photo, task_id, data_key, path))
        for value, kind, size, region in results:
            if kind in REGION_TYPES:
                where = (
                    f"Label Studio export {path}, task {task_id}, annotation {annotation_id}, region {region}"
                )
                task.regions += _regions(value, kind, size, where)
        tasks.append(task)
    return tasks, len(seen - latest.keys())


def _annotations(item: dict, data_key: str):
    """``(created_at, annotation id, photo, results)`` for each annotation of one exported item (JSON: a
    task; JSON_MIN: one annotation of a task), ``results`` as ``(value, type, (width, height), name)``."""
    if "data" in item:  # JSON: a task with its annotations
        photo = item["data"].get(data_key) if isinstance(item["data"], dict) else None
        for annotation in item.get("annotations", item.get("completions", [])) or []:
            if annotation.get("was_cancelled") or annotation.get("skipped"):
                continue
            results = [
                (
                    result.get("value") or {},
                    str(result.get("type", "")).lower(),
                    (result.get("original_width"), result.get("original_height")),
                    repr(result.get("id", index)),
                )
                for index, result in enumerate(annotation.get("result") or [])
            ]
            yield annotation.get("created_at", ""), annotation.get("id"), photo, results
    elif item.get("annotation_id") is not None:  # JSON_MIN: the data's fields, and a list per control tag
        results = [
            (value, kind, (value.get("original_width"), value.get("original_height")), f"{key}[{index}]")
            for key, values in item.items()
            if isinstance(values, list)
            for index, value in enumerate(values)
            if isinstance(value, dict)
            for kind in REGION_TYPES
            if kind in value
        ]
        yield item.get("created_at", ""), item["annotation_id"], item.get(data_key), results


def _photo(photo: Any, task_id: Any, data_key: str, path: Path) -> str:
    if not isinstance(photo, str) or not photo:
        raise DataError(f"Label Studio export {path}, task {task_id}: no data.{data_key} (the photo's URL)")
    return photo


def _regions(value: dict, kind: str, size: tuple, where: str) -> list[Region]:
    """One region per label of a result (a region may carry several labels)."""
    labels = value.get(kind)
    if not isinstance(labels, list) or not labels:
        raise DataError(f"{where}: a region without a label")
    if kind == "brushlabels":
        if value.get("format", "rle") != "rle" or "rle" not in value:
            raise DataError(f"{where}: a brush region without an rle (format {value.get('format')!r})")
        data, shape = value["rle"], "rle"
    else:
        data, shape = value.get("points"), "polygon"
    size = size if all(isinstance(side, int) and side > 0 for side in size) else None
    return [Region(str(label), shape, data, size, where) for label in labels]


def use_brush_pngs(tasks: list[Task], folder: Path, export: Path) -> None:
    """Replace the tasks' brush regions with those of the "Brush labels to PNG" export in ``folder``:
    the PNGs of each task's chosen annotation, their label read from the file name."""
    if not folder.is_dir():
        raise UsageError(f"label_studio option masks: {folder} is not a folder")
    files: dict[tuple[str, str], list[Path]] = {}
    for path in sorted(folder.glob("task-*.png")):
        match = PNG_NAME.match(path.name)
        if match:
            files.setdefault((match["task"], match["annotation"]), []).append(path)
    for task in tasks:
        labels = sorted({region.label for region in task.regions}, key=len, reverse=True)
        task.regions = [region for region in task.regions if region.kind != "rle"]
        for path in files.get((str(task.task_id), str(task.annotation_id)), []):
            rest = path.stem.rsplit("-", 1)[0]
            label = next((label for label in labels if rest.endswith(f"-{label}")), None)
            if label is None:
                raise DataError(
                    f"brush PNG {path}: its name ends with none of the labels of task {task.task_id} in "
                    f"{export} ({', '.join(labels) or 'none'})"
                )
            task.regions.append(
                Region(
                    label,
                    "png",
                    path,
                    None,
                    f"brush PNG {path} (task {task.task_id}, annotation {task.annotation_id})",
                )
            )


def _labels(root: Path, classes: Any, config_labels: list[str], tasks: list[Task]) -> list[str]:
    """The label names in class order: the classes option, the labeling config, or those found."""
    if classes is not None:
        if isinstance(classes, Path):
            classes = [
                line.strip()
                for line in _within(root, classes).read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.strip().startswith("#")
            ]
        return [name for name in classes if name.lower() != "background"]
    if config_labels:
        return config_labels
    found = sorted({region.label for task in tasks for region in task.regions} - {"background", "Background"})
    if not found:
        raise DataError(
            "label_studio: the export holds no labelled region and no labeling config names labels"
        )
    return found


def photo_file_name(reference: str) -> str:
    """The file name a task's photo URL or path ends in (``/data/upload/1/abc-photo.jpg``,
    ``/data/local-files/?d=dataset/photo.jpg``, ``s3://bucket/photo.jpg``)."""
    parsed = urlparse(reference)
    local = parse_qs(parsed.query).get("d")
    path = local[0] if local else unquote(parsed.path)
    return PurePosixPath(path.replace("\\", "/")).name


def find_photos(tasks: list[Task], images: Path, export: Path) -> dict[str, Path]:
    """``{name: photo}`` for every task, the name being the photo's stem; photos not found and two tasks
    of one photo are ``DataError``s."""
    if not images.is_dir():
        raise DataError(
            f"label_studio: no photo folder {images}; put the photos the export {export} names there, or "
            "give images=DIR"
        )
    files = {
        path.name: path
        for path in images.iterdir()
        if path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")
    }
    photos: dict[str, Path] = {}
    owners: dict[str, Any] = {}
    missing = []
    for task in tasks:
        wanted = photo_file_name(task.photo)
        plain = UPLOAD_PREFIX.match(wanted)
        photo = files.get(wanted) or (files.get(plain.group(1)) if plain else None)
        if photo is None:
            missing.append(f"task {task.task_id}: {task.photo}")
            continue
        if photo.stem in photos:
            raise DataError(
                f"Label Studio export {export}: tasks {owners[photo.stem]} and {task.task_id} both name the "
                f"photo {photo}"
            )
        photos[photo.stem], owners[photo.stem] = photo, task.task_id
        task.photo = photo.stem
    if missing:
        shown = "; ".join(missing[:MAX_LISTED]) + ("; ..." if len(missing) > MAX_LISTED else "")
        raise DataError(f"label_studio: {len(missing)} photo(s) of {export} are not in {images}: {shown}")
    return photos


# -- rendering ---------------------------------------------------------------------------------------------


def render_task(task: Task, photo: Path, class_of: dict[str, int], task_kind: str, labels: int) -> np.ndarray:
    """One photo's labels: class ids (binary and multiclass: later classes on top) or one 0/1 plane per
    label (multilabel), every region checked against the photo's size."""
    size = shown_size(photo)
    if size is None:  # unreadable: the dataset's file checks skip it or say why
        size = next(((region.size[1], region.size[0]) for region in task.regions if region.size), (1, 1))
    painted = [region for region in task.regions if region.label in class_of]  # not "background"
    if task_kind == "multilabel":
        planes = np.zeros((labels, *size), np.uint8)
        for region in painted:
            planes[class_of[region.label]] |= region_mask(region, size, photo)
        return planes
    ids = np.zeros(size, np.uint8)
    for region in sorted(painted, key=lambda region: class_of[region.label]):  # later classes on top
        ids[region_mask(region, size, photo)] = class_of[region.label]
    return ids


def region_mask(region: Region, size: tuple[int, int], photo: Path) -> np.ndarray:
    """The pixels of one region, a bool ``(height, width)`` array."""
    height, width = size
    if region.size is not None and region.size != (width, height):
        raise DataError(
            f"{region.where}: the region was drawn on a {region.size[0]}x{region.size[1]} image but its "
            f"photo {photo} is {width}x{height} (width x height)"
        )
    if region.kind == "rle":
        try:
            count = rle_count(region.data)  # checked before decoding: a bad header could ask for gigabytes
            if count != width * height * 4:
                raise DataError(
                    f"{region.where}: its rle holds {count} values, not 4 x {width} x {height} = "
                    f"{width * height * 4} (RGBA of the {width}x{height} photo {photo})"
                )
            values = decode_rle(region.data)
        except ValueError as error:
            raise DataError(f"{region.where}: {error}") from None
        return values.reshape(height, width, 4)[..., 3] >= PAINTED_ALPHA
    if region.kind == "png":
        return _png_mask(region.data, size, photo)
    points = region.data
    if not isinstance(points, list) or len(points) < 3:
        count = len(points) if isinstance(points, list) else 0
        raise DataError(f"{region.where}: a polygon needs at least 3 points, it has {count}")
    try:
        xs = np.array([float(x) * width / 100 for x, _ in points])
        ys = np.array([float(y) * height / 100 for _, y in points])
    except (TypeError, ValueError):
        raise DataError(f"{region.where}: polygon points are not [x, y] percent pairs") from None
    return fill_polygon(xs, ys, height, width)


def fill_polygon(xs: np.ndarray, ys: np.ndarray, height: int, width: int) -> np.ndarray:
    """The pixels whose centre is inside the polygon (even-odd rule), vertices in pixel units (0 is the
    photo's left or top edge), one scanline through each row of pixel centres."""
    mask = np.zeros((height, width), bool)
    x_next, y_next = np.roll(xs, -1), np.roll(ys, -1)
    first, last = max(0, int(np.floor(ys.min()))), min(height, int(np.ceil(ys.max())) + 1)
    for row in range(first, last):
        centre = row + 0.5
        crossing = (ys <= centre) != (y_next <= centre)  # edges spanning the line, each end counted once
        x0, y0, x1, y1 = xs[crossing], ys[crossing], x_next[crossing], y_next[crossing]
        hits = np.sort(x0 + (centre - y0) * (x1 - x0) / (y1 - y0))
        for left, right in zip(hits[::2], hits[1::2], strict=True):
            # columns whose centre (column + 0.5) lies in [left, right)
            mask[row, max(0, int(np.ceil(left - 0.5))) : max(0, min(width, int(np.ceil(right - 0.5))))] = True
    return mask


def _png_mask(path: Path, size: tuple[int, int], photo: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            alpha = image.getchannel("A") if image.mode in ("LA", "RGBA", "PA") else image.convert("L")
            values = np.asarray(alpha)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise DataError(f"cannot read brush PNG {path}: {error}") from None
    if values.shape != size:
        raise DataError(
            f"brush PNG {path} is {values.shape[1]}x{values.shape[0]} but its photo {photo} is "
            f"{size[1]}x{size[0]} (width x height)"
        )
    return values >= PAINTED_ALPHA


@segkit.hookimpl
def register_datasets(register):
    register(
        "label_studio",
        build_label_studio,
        description="Label Studio export (JSON/JSON_MIN with brush RLE and polygons, or the brush PNGs): "
        "classes from the labeling config, split at random",
        options=OPTIONS,
    )
