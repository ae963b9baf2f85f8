"""Dataset "coco": a COCO instances (or panoptic) JSON and its photos, read in place.

Layouts (``ROOT`` is the ``root`` option; ``layout=auto`` takes whichever is there)::

    ROOT/annotations/instances_train2017.json   ROOT/train2017/*.jpg     layout=coco (COCO's own)
    ROOT/annotations/instances_val2017.json     ROOT/val2017/*.jpg       (``year`` picks 2017, 2014, ...)
    ROOT/train/_annotations.coco.json           ROOT/train/*.jpg         layout=roboflow (a Roboflow
    ROOT/valid/_annotations.coco.json           ROOT/valid/*.jpg         "COCO Segmentation" export)

``annotations=panoptic`` reads COCO's panoptic layout instead: ``annotations/panoptic_train2017.json``
with its PNGs in ``annotations/panoptic_train2017/`` (segment id = R + 256 G + 256² B, 0 unlabelled).

Splits: ``train`` is train, ``valid`` is COCO's val (Roboflow's valid). ``test`` is the export's labelled
test split where it has one (Roboflow's test/, or an ``instances_test2017.json`` holding annotations);
COCO's own test2017 comes without annotations, so there a test split is refused (a ``DataError`` that
evaluate follows with ``--split valid``) rather than carved out of val: val2017 is the set everyone
reports on, and it stays whole.

Masks are rendered once per annotation file with pycocotools (polygons, uncompressed and compressed
RLE; ``pip install segkit[coco]``) into the data folder's cache (``segkit.datasets.rendered_masks``,
keyed by the JSON, this renderer's version and the options below), then read like any mask files.

- ``categories``: which categories become classes, in this order (names or ids; default: all of them, in
  the JSON's order; a Roboflow export's grouping category, the unused supercategory of the others, is
  left out). Pixels of the other categories are background (``other=background``) or ignored
  (``other=ignore``).
- ``task``: ``auto`` is binary when exactly one category is chosen (classes: that name), multiclass
  otherwise (classes: ``background`` at id 0, then the categories); ``binary`` with several categories
  makes all of them foreground; ``multilabel`` gives one binary mask per category (overlaps kept).
- Crowd regions (``iscrowd=1``) are ignored (255) by default; ``crowd=label`` labels them like any
  instance. A crowd region of a category not chosen counts as that category: ``other`` decides.
- Overlaps: crowd regions lie beneath every instance, and instances are drawn from the largest to the
  smallest (pixel count of the rendered mask), so a smaller instance is on top; of two equally large
  ones the later in the file is on top. (Panoptic segments never overlap; unlabelled pixels, id 0, are
  ignored.)
- A photo without annotations is kept: a background-only photo.

A malformed annotation file (not JSON, a polygon with fewer than 3 points, an RLE whose size is not its
image's, a category or image id the file does not define, an image entry whose size is not its photo's)
is a ``DataError`` naming the file and the annotation (or image). The file's structure is checked before
anything is rendered; a photo's size when its mask is rendered, and then nothing is recorded as rendered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

import segkit
from segkit.component_options import Option, Parser, choice, optional, parse_component_options, text
from segkit.data.transforms import IGNORE_INDEX, build_sample_transform
from segkit.datasets import (
    PAIRED_DATASET_OPTIONS,
    STRICT,
    Pair,
    PairedImageDataset,
    check_root,
    class_ids_from_mask,
    default_augment,
    rendered_masks,
)
from segkit.errors import DataError, UsageError

#: Change when a rendered mask would come out differently: the cached renders are then redone.
RENDERER = "coco-1"
INSTALL_HINT = "pip install segkit[coco]"
ROBOFLOW_FILE = "_annotations.coco.json"
#: segkit's split -> the name COCO's files use for it, and Roboflow's folder.
COCO_SPLITS = {"train": "train", "valid": "val", "test": "test"}
ROBOFLOW_SPLITS = {"train": "train", "valid": "valid", "test": "test"}
TASK_CHOICES = ("auto", "binary", "multiclass", "multilabel")


class CocoDataset(PairedImageDataset):
    """Photos with masks rendered from a COCO JSON: 0/1/255 (binary, each multilabel label) or class ids
    and 255 (multiclass); see the module docstring."""

    def labels_from_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if getattr(self, "task", "binary") == "multiclass":
            return class_ids_from_mask(raw, path, len(self.class_names))
        bad = set(np.unique(raw).tolist()) - {0, 1, IGNORE_INDEX}
        if bad:  # only a cache file changed by hand can hold these
            raise DataError(
                f"rendered mask {path} holds {sorted(bad)}; delete the cache folder to render again"
            )
        return raw.astype(np.uint8)


def _categories(value: Any) -> list[str | int]:
    """Category names or ids: a list, one id, or a string "cat,dog" / "[cat, dog]"."""
    if isinstance(value, bool):
        raise TypeError(f"not a category: {value!r}")
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            stripped = stripped[1:-1]
        value = [item.strip().strip("'\"").strip() for item in stripped.split(",")]
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(f"not a list of categories: {value!r}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)) or item == "":
            raise TypeError(f"not a category name or id: {item!r}")
    return list(value)


OPTIONS = {
    **PAIRED_DATASET_OPTIONS,
    "strict": STRICT,
    "layout": Option(
        "auto",
        choice("auto", "coco", "roboflow"),
        help="coco: annotations/instances_train2017.json, train2017/; roboflow: train/_annotations.coco.json",
    ),
    "year": Option("2017", text, help="the year in COCO's file and folder names (layout=coco)"),
    "annotations": Option(
        "instances", choice("instances", "panoptic"), help="instances JSON, or panoptic JSON + PNGs"
    ),
    "categories": Option(
        None,
        optional(Parser(_categories, "category names or ids, as a list or comma-separated")),
        help="the categories that become classes, in this order (default: all)",
    ),
    "other": Option(
        "background",
        choice("background", "ignore"),
        help="pixels of categories not chosen: background or ignore",
    ),
    "crowd": Option(
        "ignore", choice("ignore", "label"), help="crowd regions (iscrowd=1): ignored, or labelled"
    ),
    "task": Option(
        "auto",
        choice(*TASK_CHOICES),
        help="auto: binary with one category, else multiclass; multilabel: one binary mask per category",
    ),
}


def build_coco(root: str | Path | None = None, **options: Any) -> CocoDataset:
    """The photos of one split of a COCO (or Roboflow COCO) dataset with their rendered masks; options
    in ``OPTIONS``, meanings in the module docstring."""
    parsed = parse_component_options("dataset", "coco", {"root": root, **options}, OPTIONS)
    root = check_root(parsed["root"], "coco")
    split, panoptic = parsed["split"], parsed["annotations"] == "panoptic"
    json_path, images_folder, png_folder = _split_files(
        root, parsed["layout"], parsed["year"], split, panoptic
    )
    content = _read_json(json_path)
    images, by_image, categories = (_check_panoptic if panoptic else _check_instances)(json_path, content)
    chosen = _chosen(json_path, categories, parsed["categories"])
    task = parsed["task"]
    if task == "auto":
        task = "binary" if len(chosen) == 1 else "multiclass"
    names = [category["name"] for category in chosen]
    if task == "multiclass" and "background" in names:
        raise UsageError(
            f"coco dataset {json_path}: a category is named 'background', the name of class 0; leave it out "
            "with the categories option"
        )
    if not panoptic:
        _pycocotools()  # missing: one line now, before anything is rendered
    photos = _photos(json_path, images, images_folder)
    if panoptic:
        sources = [json_path] + [png_folder / by_image[image["id"]]["file_name"] for image in images]
    else:
        sources = [json_path]
    rule = {
        "task": task,
        "categories": [category["id"] for category in chosen],
        "other": parsed["other"],
        "crowd": parsed["crowd"],
        "annotations": parsed["annotations"],
    }
    value_of = _values(rule, task)
    by_name = {name: image for (name, _), image in zip(photos, images, strict=True)}
    photo_of = dict(photos)

    def render(name: str) -> np.ndarray:
        image = by_name[name]
        _check_photo_size(json_path, image, photo_of[name])
        if panoptic:
            return _render_panoptic(json_path, image, by_image[image["id"]], png_folder, value_of, rule)
        return _render_instances(
            json_path, image, by_image.get(image["id"], []), value_of, rule, task, chosen
        )

    masks = rendered_masks(root, sources, RENDERER, rule, [name for name, _ in photos], render)
    pairs = [
        Pair(name, photo, masks[name][0], tuple(masks[name]) if task == "multilabel" else ())
        for name, photo in photos
    ]
    class_names: list[str] | None
    class_names = ["background", *names] if task == "multiclass" else names
    if task == "binary" and len(names) > 1:
        class_names = None  # several categories are one "foreground"
    augment = default_augment(parsed["augment"], split)
    transform = build_sample_transform(
        augment, parsed["image_size"], train=split == "train", sampling=parsed["sampling"]
    )
    description = f"coco dataset {json_path} (split {split!r}, {task}: {', '.join(names)})"
    return CocoDataset(
        pairs,
        transform,
        strict=parsed["strict"],
        with_ignore=True,
        description=description,
        task=task,
        class_names=class_names,
        data_root=root,  # the file index beside the data, wherever the masks were rendered
    )


def _split_files(root: Path, layout: str, year: str, split: str, panoptic: bool) -> tuple[Path, Path, Path]:
    """``(json, photo folder, panoptic PNG folder)`` of ``split``; a missing split explained."""
    kind = "panoptic" if panoptic else "instances"
    coco_train = root / "annotations" / f"{kind}_train{year}.json"
    if layout == "auto":
        if (root / "annotations").is_dir():
            layout = "coco"
        elif any((root / folder / ROBOFLOW_FILE).is_file() for folder in ROBOFLOW_SPLITS.values()):
            layout = "roboflow"
        else:
            found = ", ".join(sorted(path.name for path in root.iterdir())[:20]) or "nothing"
            raise DataError(
                f"coco dataset {root} is neither COCO's layout ({coco_train} with {root / f'train{year}'}/) "
                f"nor a Roboflow export ({root / 'train' / ROBOFLOW_FILE}); found: {found}"
            )
    if layout == "roboflow":
        if panoptic:
            raise UsageError(
                "coco option annotations=panoptic needs layout=coco (Roboflow exports instances)"
            )
        folder = root / ROBOFLOW_SPLITS[split]
        json_path = folder / ROBOFLOW_FILE
        if not json_path.is_file():
            if split == "test":
                raise DataError(f"coco dataset {root} has no labelled test split (no {json_path})")
            raise DataError(
                f"coco dataset {root}: the {split} split's annotation file {json_path} does not exist"
            )
        return json_path, folder, folder
    name = f"{COCO_SPLITS[split]}{year}"
    json_path = root / "annotations" / f"{kind}_{name}.json"
    if not json_path.is_file():
        if split == "test":
            raise DataError(
                f"coco dataset {root} has no labelled test split: COCO's test{year} photos come without "
                f"annotations, and there is no {json_path}"
            )
        others = sorted(path.name for path in (root / "annotations").glob("*.json"))[:20]
        raise DataError(
            f"coco dataset {root}: the {split} split's annotation file {json_path} does not exist; "
            f"annotations/ holds: {', '.join(others) or 'no JSON file'}"
        )
    images_folder = root / name
    if not images_folder.is_dir():
        raise DataError(
            f"coco dataset {root}: the {split} split's photo folder {images_folder} does not exist"
        )
    return json_path, images_folder, root / "annotations" / f"{kind}_{name}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise DataError(f"cannot read COCO annotation file {path}: {error}") from None
    if not isinstance(content, dict):
        raise DataError(f"COCO annotation file {path} is not a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(content.get(key), list):
            hint = " (a test split's image_info file has no annotations)" if key == "annotations" else ""
            raise DataError(f"COCO annotation file {path} has no {key!r} list{hint}")
    return content


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_common(path: Path, content: dict[str, Any]) -> tuple[list[dict], dict[Any, dict]]:
    """The image entries (checked) and the categories by id (checked)."""
    images, seen = [], set()
    for image in content["images"]:
        if not isinstance(image, dict) or not isinstance(image.get("file_name"), str) or "id" not in image:
            raise DataError(f"{path}: image entry {str(image)[:80]} needs an id and a file_name")
        if not all(_is_int(image.get(key)) and image[key] > 0 for key in ("width", "height")):
            raise DataError(
                f"{path}: image {image['id']} ({image['file_name']}) needs a positive width and height"
            )
        if image["id"] in seen:
            raise DataError(f"{path}: image id {image['id']} appears twice")
        seen.add(image["id"])
        images.append(image)
    categories = {}
    for category in content["categories"]:
        if (
            not isinstance(category, dict)
            or "id" not in category
            or not isinstance(category.get("name"), str)
        ):
            raise DataError(f"{path}: category entry {str(category)[:80]} needs an id and a name")
        categories[category["id"]] = category
    if not categories:
        raise DataError(f"{path} defines no categories")
    return images, categories


def _check_instances(path: Path, content: dict[str, Any]) -> tuple[list[dict], dict[Any, list], dict]:
    """Every annotation checked for what would make rendering fail or mislead; ``(images, annotations by
    image id, categories by id)``."""
    images, categories = _check_common(path, content)
    sizes = {image["id"]: (image["height"], image["width"]) for image in images}
    by_image: dict[Any, list] = {}
    for annotation in content["annotations"]:
        if not isinstance(annotation, dict):
            raise DataError(f"{path}: annotation {str(annotation)[:80]} is not an object")
        where = f"{path}: annotation {annotation.get('id')}"
        if annotation.get("image_id") not in sizes:
            raise DataError(f"{where}: its image_id {annotation.get('image_id')!r} is no image of the file")
        if annotation.get("category_id") not in categories:
            raise DataError(
                f"{where}: its category_id {annotation.get('category_id')!r} is no category of the file"
            )
        _check_segmentation(where, annotation.get("segmentation"), sizes[annotation["image_id"]])
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    return images, by_image, categories


def _check_segmentation(where: str, segmentation: Any, size: tuple[int, int]) -> None:
    if isinstance(segmentation, list):
        if not segmentation:
            raise DataError(
                f"{where} has no segmentation (a detection-only export?); export masks or polygons"
            )
        for polygon in segmentation:
            if not isinstance(polygon, list) or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) for x in polygon
            ):
                raise DataError(f"{where}: a polygon must be a list of numbers x1, y1, x2, y2, ...")
            if len(polygon) < 6 or len(polygon) % 2:
                raise DataError(
                    f"{where}: a polygon needs at least 3 points (x, y pairs), got {len(polygon)} number(s)"
                )
        return
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        raise DataError(f"{where}: segmentation must be polygons or an RLE {{size, counts}}")
    rle_size = segmentation.get("size")
    if (
        not isinstance(rle_size, list)
        or not all(_is_int(side) for side in rle_size)
        or rle_size != list(size)
    ):
        raise DataError(f"{where}: its RLE size {rle_size!r} (height, width) is not its image's {list(size)}")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(_is_int(count) and count >= 0 for count in counts) or sum(counts) != size[0] * size[1]:
            raise DataError(f"{where}: its uncompressed RLE counts do not add up to height x width")
    elif not isinstance(counts, str):
        raise DataError(f"{where}: RLE counts must be a list of numbers or a compressed string")


def _check_panoptic(path: Path, content: dict[str, Any]) -> tuple[list[dict], dict[Any, dict], dict]:
    images, categories = _check_common(path, content)
    known = {image["id"] for image in images}
    by_image = {}
    for entry in content["annotations"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            raise DataError(f"{path}: panoptic annotation {str(entry)[:80]} needs a file_name")
        where = f"{path}: panoptic annotation {entry['file_name']}"
        if entry.get("image_id") not in known:
            raise DataError(f"{where}: its image_id {entry.get('image_id')!r} is no image of the file")
        for segment in entry.get("segments_info", []):
            if segment.get("category_id") not in categories:
                raise DataError(
                    f"{where}: segment {segment.get('id')} has category_id {segment.get('category_id')!r}, "
                    "no category of the file"
                )
        by_image[entry["image_id"]] = entry
    for image in images:
        if image["id"] not in by_image:
            raise DataError(f"{path}: image {image['id']} ({image['file_name']}) has no panoptic annotation")
    return images, by_image, categories


def _chosen(path: Path, categories: dict[Any, dict], wanted: list[str | int] | None) -> list[dict]:
    """The categories that become classes, in order (module docstring)."""
    if wanted is None:
        groups = {category.get("supercategory") for category in categories.values()}
        return [
            category
            for category in categories.values()
            # Roboflow's grouping entry: the supercategory "none" of its project's real categories
            if not (
                category["name"] in groups and category.get("supercategory") == "none" and len(categories) > 1
            )
        ]
    by_name = {category["name"]: category for category in categories.values()}
    chosen = []
    for item in wanted:
        category = by_name.get(item) if isinstance(item, str) else None
        if category is None:
            number = int(item) if isinstance(item, int) or item.lstrip("-").isdigit() else None
            category = categories.get(number)
        if category is None:
            listed = ", ".join(f"{c['id']}: {c['name']}" for c in list(categories.values())[:30])
            raise UsageError(f"coco option categories: {item!r} is no category of {path}; it has {listed}")
        if category in chosen:
            raise UsageError(f"coco option categories names {category['name']!r} twice")
        chosen.append(category)
    return chosen


def _values(rule: dict[str, Any], task: str) -> dict[Any, int]:
    """The mask value of each chosen category id (multilabel: its plane)."""
    ids = rule["categories"]
    if task == "binary":
        return {category_id: 1 for category_id in ids}
    if task == "multiclass":
        return {category_id: index + 1 for index, category_id in enumerate(ids)}
    return {category_id: index for index, category_id in enumerate(ids)}


def _pycocotools():
    try:
        from pycocotools import mask
    except ImportError:
        raise UsageError(
            f"the coco dataset renders masks with pycocotools, which is not installed: {INSTALL_HINT}"
        ) from None
    return mask


def _photos(path: Path, images: Sequence[dict], folder: Path) -> list[tuple[str, Path]]:
    """``(name, photo path)`` of every image entry; the name is the file's stem."""
    seen: dict[str, str] = {}
    photos = []
    for image in images:
        name = Path(image["file_name"]).stem
        if name in seen:
            raise DataError(f"{path}: images {seen[name]} and {image['file_name']} share the name {name!r}")
        seen[name] = image["file_name"]
        photos.append((name, folder / image["file_name"]))
    if not photos:
        raise DataError(f"{path} lists no images")
    return photos


def _check_photo_size(path: Path, image: dict, photo: Path) -> None:
    """The image entry's size against the photo's (after its EXIF turn, as segkit reads it)."""
    try:
        with Image.open(photo) as opened:
            width, height = ImageOps.exif_transpose(opened).size if _turned(opened) else opened.size
    except Exception:  # noqa: BLE001 - an unreadable photo is the file checks' to report, by name
        return
    if (width, height) != (image["width"], image["height"]):
        raise DataError(
            f"{path}: image {image['id']} ({image['file_name']}) is {image['width']}x{image['height']} in "
            f"the file, but {photo} is {width}x{height} (width x height): its annotations belong to another "
            "picture"
        )


def _turned(opened: Image.Image) -> bool:
    return opened.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # the orientations that swap width and height


def _render_instances(
    path: Path, image: dict, annotations: list[dict], value_of: dict, rule: dict, task: str, chosen: list
) -> np.ndarray:
    mask_api = _pycocotools()
    height, width = image["height"], image["width"]
    other = 0 if rule["other"] == "background" else IGNORE_INDEX
    decoded = []
    for annotation in annotations:
        segmentation = annotation["segmentation"]
        try:
            if isinstance(segmentation, list):
                rle = mask_api.merge(mask_api.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation["counts"], list):
                rle = mask_api.frPyObjects(segmentation, height, width)
            else:
                rle = {"size": [height, width], "counts": segmentation["counts"].encode("ascii")}
            pixels = mask_api.decode(rle).astype(bool)
        except (ValueError, TypeError, UnicodeEncodeError) as error:
            raise DataError(f"{path}: annotation {annotation.get('id')} cannot be decoded: {error}") from None
        decoded.append((annotation, pixels))
    if task == "multilabel":
        planes = np.zeros((len(chosen), height, width), np.uint8)
        crowd = np.zeros_like(planes, dtype=bool)
        elsewhere = np.zeros((height, width), bool)  # pixels of categories not chosen
        for annotation, pixels in decoded:
            plane = value_of.get(annotation["category_id"])
            if plane is None:
                elsewhere |= pixels
            elif annotation.get("iscrowd") and rule["crowd"] == "ignore":
                crowd[plane] |= pixels
            else:
                planes[plane][pixels] = 1
        planes[crowd & (planes == 0)] = IGNORE_INDEX
        planes[(planes == 0) & elsewhere[None] & (other == IGNORE_INDEX)] = IGNORE_INDEX
        return planes
    labels = np.zeros((height, width), np.uint8)
    # crowd regions beneath every instance; then from the largest to the smallest, the later on top at a tie
    order = sorted(
        range(len(decoded)),
        key=lambda i: (not decoded[i][0].get("iscrowd"), -int(decoded[i][1].sum()), i),
    )
    for index in order:
        annotation, pixels = decoded[index]
        value = value_of.get(annotation["category_id"], other)
        if annotation.get("iscrowd") and rule["crowd"] == "ignore" and annotation["category_id"] in value_of:
            value = IGNORE_INDEX
        labels[pixels] = value
    return labels


def _render_panoptic(
    path: Path, image: dict, entry: dict, png_folder: Path, value_of: dict, rule: dict
) -> np.ndarray:
    png = png_folder / entry["file_name"]
    try:
        with Image.open(png) as opened:
            rgb = np.asarray(opened.convert("RGB"), np.uint32)
    except Exception as error:  # noqa: BLE001 - any unreadable PNG is named
        raise DataError(f"{path}: panoptic PNG {png} cannot be read: {error}") from None
    if rgb.shape[:2] != (image["height"], image["width"]):
        raise DataError(
            f"{path}: panoptic PNG {png} is {rgb.shape[1]}x{rgb.shape[0]} but image {image['id']} is "
            f"{image['width']}x{image['height']} (width x height)"
        )
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    other = 0 if rule["other"] == "background" else IGNORE_INDEX
    # segment id -> (plane or class value, or None for "not a chosen category", and whether it is ignored)
    lookup: dict[int, tuple[int | None, bool]] = {0: (None, True)}  # 0: unlabelled, ignored
    for segment in entry.get("segments_info", []):
        value = value_of.get(segment["category_id"])
        crowd = bool(segment.get("iscrowd")) and rule["crowd"] == "ignore" and value is not None
        lookup[int(segment["id"])] = (value, crowd)
    present = np.unique(ids).tolist()
    unknown = [segment_id for segment_id in present if segment_id not in lookup]
    if unknown:
        raise DataError(
            f"{path}: panoptic PNG {png} holds segment id(s) {unknown[:10]} its segments_info lacks"
        )
    multilabel = rule["task"] == "multilabel"
    labels = np.zeros(((len(value_of),) if multilabel else ()) + ids.shape, np.uint8)
    for segment_id in present:
        (value, ignored), where = lookup[segment_id], ids == segment_id
        if not multilabel:
            labels[where] = IGNORE_INDEX if ignored else other if value is None else value
        elif segment_id == 0 or (value is None and other == IGNORE_INDEX):
            labels[:, where] = IGNORE_INDEX  # segments never overlap: no other plane knows these pixels
        elif value is not None:
            labels[value][where] = IGNORE_INDEX if ignored else 1
    return labels


@segkit.hookimpl
def register_datasets(register):
    register(
        "coco",
        build_coco,
        description="a COCO instances/panoptic JSON (or a Roboflow COCO export) and its photos: categories "
        "become classes (categories= to pick), crowd ignored",
        options=OPTIONS,
    )
