"""A plain loop over smp's Unet-ResNet34 under a time budget: the baseline ``--recipe auto`` must beat.

    python benchmarks/smp_baseline.py oxford_pet ../shared/datasets/oxford-iiit-pet-mini 15m
    python benchmarks/smp_baseline.py oxford_pet ../shared/datasets/oxford-iiit-pet-mini 15m \\
        --dataset-option task=trimap
    python benchmarks/smp_baseline.py folder /tmp/street 15m            # generated_datasets.py street

Written the way a user writes it in an afternoon, not with segkit's trainer:
``smp.Unet("resnet34", encoder_weights=None, classes=K)`` (K = 1 for a binary task), Adam at 1e-3,
batch 8, whole photos resized to one fixed size (bilinear for photos, nearest for masks; the aspect
ratio of the median photo, short side ``--size-short``, both sides multiples of 32: 360x480 and
240x320 -> 192x256), a random horizontal flip, cross-entropy with ``ignore_index`` (multi-class) or
BCE-with-logits over the pixels not ignored (binary), trained until ``BUDGET`` wall seconds are spent
(the clock starts before the data is read and is checked before each step). Then the final model is
scored on the valid split at each photo's original size: logits resized back bilinearly, argmax or
sigmoid > 0.5, counted by segkit's own metric accumulators, so the score is defined exactly as
``segkit evaluate RUN --split valid`` defines the one ``recipes_vs_auto.py`` reads (``score_of``):
per-image mean Dice for binary tasks, mean IoU pooled over the split for multi-class ones (over the
foreground classes where one is the background, else over every class), with each class's IoU.

segkit is used only to list and read a split's photos and masks, so any registered dataset of files
works (``folder``, ``oxford_pet``, ...) with its ``--dataset-option``s. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image
from recipes_vs_auto import score_of

from segkit.config.options import parse_options
from segkit.config.settings import parse_duration
from segkit.data.imageio import read_image
from segkit.data.splits import build_split
from segkit.task import Task, task_for_dataset

#: Both sides of the network input are multiples of this (the encoder halves the input five times).
STEP = 32
BATCH_SIZE = 8
LEARNING_RATE = 1e-3
IGNORED = 255  # the label of a pixel that no loss or metric counts
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


@dataclass
class Item:
    """One photo as read from disk: ``photo`` (H, W, 3) uint8 RGB; ``mask`` (H, W) class ids
    (multi-class) or 0/1 (binary); ``ignore`` (H, W) bool, or None when the dataset ignores nothing."""

    name: str
    photo: np.ndarray
    mask: np.ndarray
    ignore: np.ndarray | None


def read_split(dataset: str, data_path: str | None, split: str, options: dict) -> tuple[list[Item], Task]:
    """Every photo of ``split`` decoded in memory, with its mask and ignore map at the original size,
    and the task the dataset asks for (as ``segkit run`` would train it)."""
    values = {"dataset": dataset, "dataset_options": options, "data_path": data_path, "augment": "none"}
    data = build_split(values, split, image_size=256)
    task = task_for_dataset(data, threshold=0.5)
    if task.kind == "multilabel" or not hasattr(data, "image_path"):
        raise SystemExit(f"{dataset}: this baseline reads binary or multi-class datasets of files")
    items = []
    for index in range(len(data)):
        photo = read_image(data.image_path(index))
        if not isinstance(photo, Image.Image):
            raise SystemExit(f"{data.image_path(index)}: this baseline reads 8-bit RGB photos only")
        mask, ignore = data.original_mask(index)
        items.append(Item(data.names[index], np.asarray(photo), np.asarray(mask), ignore))
    return items, task


def input_size(photo_sizes: Sequence[tuple[int, int]], short: int = 192) -> tuple[int, int]:
    """``(height, width)`` of the network input: the aspect ratio of the median photo (by aspect
    ratio), the short side ``short``, the long side rounded to the nearest multiple of ``STEP``.
    ``photo_sizes`` are ``(height, width)``."""
    if short <= 0 or short % STEP:
        raise SystemExit(f"--size-short must be a positive multiple of {STEP}, got {short}")
    aspect = float(np.median([width / height for height, width in photo_sizes]))
    long = max(short, STEP * round(short * max(aspect, 1 / aspect) / STEP))
    return (short, long) if aspect >= 1 else (long, short)


def resized_photos(items: Sequence[Item], size: tuple[int, int]) -> torch.Tensor:
    """(N, 3, H, W) uint8, each photo resized bilinearly to ``size``."""
    height, width = size
    photos = [Image.fromarray(item.photo).resize((width, height), Image.BILINEAR) for item in items]
    return torch.from_numpy(np.stack([np.asarray(photo) for photo in photos])).permute(0, 3, 1, 2)


def resized_labels(items: Sequence[Item], size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) uint8 labels (class ids or 0/1, ``IGNORED`` where ignored), resized nearest."""
    height, width = size
    labels = []
    for item in items:
        label = item.mask if item.ignore is None else np.where(item.ignore, IGNORED, item.mask)
        image = Image.fromarray(label.astype(np.uint8)).resize((width, height), Image.NEAREST)
        labels.append(np.asarray(image))
    return torch.from_numpy(np.stack(labels))


def normalised(photos: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, 3, H, W) photos as the float input an ImageNet-style encoder expects."""
    mean = torch.as_tensor(MEAN, device=device)[:, None, None]
    std = torch.as_tensor(STD, device=device)[:, None, None]
    return (photos.to(device).float() - mean) / std


def loss_of(logits: torch.Tensor, labels: torch.Tensor, task: Task) -> torch.Tensor:
    """Cross-entropy (multi-class) or BCE-with-logits (binary), over the pixels not ignored."""
    labels = labels.long()
    if task.kind == "multiclass":
        return F.cross_entropy(logits, labels, ignore_index=IGNORED)
    counted = (labels != IGNORED).float()
    losses = F.binary_cross_entropy_with_logits(logits[:, 0], (labels == 1).float(), reduction="none")
    return (losses * counted).sum() / counted.sum().clamp_min(1)


def batches(count: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch of shuffled indices, in batches; a last batch of one is dropped (BatchNorm)."""
    order = rng.permutation(count)
    for start in range(0, count, batch_size):
        chunk = order[start : start + batch_size]
        if len(chunk) > 1 or count == 1:
            yield chunk


@dataclass
class Trained:
    model: torch.nn.Module
    steps: int
    epochs: float  # photos seen over the training split's size
    seconds: float  # from the clock's start to the end of the last step


def train(
    items: Sequence[Item],
    task: Task,
    size: tuple[int, int],
    budget_s: float,
    started: float,
    *,
    encoder: str = "resnet34",
    seed: int = 0,
    clock: Callable[[], float] = time.monotonic,
    device: torch.device | None = None,
) -> Trained:
    """Train a Unet from scratch until ``clock() - started`` reaches ``budget_s`` (checked before each
    step)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    photos, labels = resized_photos(items, size), resized_labels(items, size)
    model = smp.Unet(encoder, encoder_weights=None, classes=task.out_channels).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    steps = seen = 0
    while clock() - started < budget_s:
        for chunk in batches(len(items), BATCH_SIZE, rng):
            if clock() - started >= budget_s:
                break
            index = torch.from_numpy(chunk)
            images, targets = normalised(photos[index], device), labels[index].to(device)
            flip = torch.from_numpy(rng.random(len(chunk)) < 0.5).to(device)
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            targets = torch.where(flip[:, None, None], targets.flip(-1), targets)
            loss = loss_of(model(images), targets, task)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps, seen = steps + 1, seen + len(chunk)
    return Trained(model, steps, seen / len(items), clock() - started)


def score(model: torch.nn.Module, items: Sequence[Item], task: Task, size: tuple[int, int]) -> dict:
    """The model's score on ``items`` at each photo's original size, as ``segkit evaluate`` computes it:
    ``metric`` and ``score`` (``recipes_vs_auto.score_of`` on the accumulator's figures), and for
    several classes the mean IoU over every class and each class's IoU (pooled over the split)."""
    device = next(model.parameters(), torch.empty(0)).device
    accumulator = task.new_accumulator()
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(items), BATCH_SIZE):
            chunk = items[start : start + BATCH_SIZE]
            logits = model(normalised(resized_photos(chunk, size), device)).float().cpu()
            for item, one in zip(chunk, logits, strict=True):
                full = F.interpolate(one[None], size=item.mask.shape, mode="bilinear", align_corners=False)
                dtype = torch.int64 if task.kind == "multiclass" else torch.float32
                truth = torch.as_tensor(item.mask, dtype=dtype)[None, None]
                ignore = None if item.ignore is None else torch.as_tensor(item.ignore)[None, None]
                accumulator.update(full, truth, ignore=ignore, names=[item.name])
    figures = accumulator.compute()
    metric, value = score_of({"original_resolution": figures})
    result: dict = {"metric": metric, "score": round(value, 4)}
    if task.kind == "multiclass":
        averaged = [task.class_names[index] for index in task.averaged]
        result["score_classes"] = averaged
        result["iou_all_classes"] = round(figures["iou_macro_all_dataset"], 4)
        result["iou_per_class"] = {name: round(figures[f"iou_{name}"], 4) for name in task.class_names}
    return result


def run_baseline(
    dataset: str,
    data_path: str | None,
    budget_s: float,
    *,
    options: dict | None = None,
    size_short: int = 192,
    seed: int = 0,
    encoder: str = "resnet34",
) -> dict:
    """Read, train under the budget, score; the result line as a dict."""
    started = time.monotonic()
    train_items, task = read_split(dataset, data_path, "train", options or {})
    size = input_size([item.photo.shape[:2] for item in train_items], size_short)
    trained = train(train_items, task, size, budget_s, started, encoder=encoder, seed=seed)
    scoring_started = time.monotonic()
    valid_items, _ = read_split(dataset, data_path, "valid", options or {})
    scores = score(trained.model, valid_items, task, size)
    return {
        "baseline": f"smp Unet-{encoder}, plain loop",
        "dataset": dataset,
        "data_path": data_path,
        "dataset_options": options or {},
        "budget_s": budget_s,
        "steps": trained.steps,
        "epochs": round(trained.epochs, 2),
        "input_size": list(size),
        "train_photos": len(train_items),
        "valid_photos": len(valid_items),
        "seconds": round(trained.seconds, 1),
        "scoring_s": round(time.monotonic() - scoring_started, 1),
        **scores,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="registered dataset name (folder, oxford_pet, ...)")
    parser.add_argument("data_path")
    parser.add_argument("budget", help="wall time to train, as --time-budget takes it: 15m, 90s, 1.5h")
    parser.add_argument("--size-short", type=int, default=192, help="short side of the input (default 192)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--encoder", default="resnet34", help="smp encoder (default resnet34)")
    args = parser.parse_args(argv)
    result = run_baseline(
        args.dataset,
        str(Path(args.data_path).resolve()),
        parse_duration(args.budget),
        options=parse_options(args.dataset_option, "--dataset-option"),
        size_short=args.size_short,
        seed=args.seed,
        encoder=args.encoder,
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
