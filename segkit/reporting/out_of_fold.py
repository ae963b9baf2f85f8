"""Out-of-fold predictions of a ``--folds`` run and the choices made on them.

Every pooled photo is predicted once, by the model of the fold that held it out (it never trained on
it), at the photo's own size, with and without flip TTA (``collect_held_out``). On all of them
together, ``choose`` decides, one step after the other, each against the choices kept so far:

1. flip TTA;
2. the threshold (binary: one; multilabel: one per label), the best of ``THRESHOLDS``;
3. hole filling, then keeping the largest component (binary: the mask; multiclass: per class, its
   removed pixels becoming the background; multilabel: per label).

A step is kept only when it raises the out-of-fold score by more than its standard error: the mean
of the per-photo differences (with the step minus without, photo by photo) must exceed their
standard deviation over the square root of the number of photos. Each ``Choice`` records both
numbers. The per-photo score is the figure a run reports first, taken photo by photo: Dice for a
binary task; for the others the mean over the averaged classes (multiclass: the foreground classes)
of the photo's IoU (multiclass) or Dice (multilabel) per class, a class absent from both the photo's
truth and its prediction left out of its mean. Ignored pixels count for nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkit.config.run_folder import FOLDS_FILE, read_json_object
from segkit.data.splits import evaluation_split
from segkit.inference.postprocess import postprocess_classes, postprocess_mask
from segkit.inference.predictor import TrainedModel, predict_logits, resize_logits
from segkit.inference.tiling import Tiles
from segkit.progress import progress

#: Thresholds tried for a binary mask or a multilabel label.
THRESHOLDS = tuple(round(0.1 + 0.05 * step, 2) for step in range(17))
#: The threshold every model starts from.
DEFAULT_THRESHOLD = 0.5
STEPS = ("fill_holes", "keep_largest")


@dataclass
class HeldOut:
    """One photo's out-of-fold prediction: binary ``(H, W)`` and multilabel ``(K, H, W)`` foreground
    probabilities (float16), multiclass ``(H, W)`` argmax ids, keyed by TTA off/on; its truth (binary
    and multilabel {0, 1}, multiclass ids) and ignored pixels (or None)."""

    name: str
    fold: int
    predicted: dict[bool, np.ndarray]
    truth: np.ndarray
    ignore: np.ndarray | None


@dataclass
class Choice:
    """A step tried on the out-of-fold predictions and whether it was kept."""

    step: str
    target: str
    value: Any
    without: float
    with_: float
    gain: float
    standard_error: float
    photos: int
    kept: bool

    def record(self) -> dict[str, Any]:
        record = asdict(self)
        record["with"] = record.pop("with_")
        return record


@dataclass
class Settings:
    """The inference choices being decided: flip TTA, the thresholds, clean-up steps."""

    tta: bool = False
    threshold: float = DEFAULT_THRESHOLD
    label_thresholds: list[float] = field(default_factory=list)
    fill_holes: bool = False
    keep_largest: bool = False
    class_steps: dict[str, list[int]] = field(default_factory=lambda: {step: [] for step in STEPS})

    def inference(self, kind: str) -> dict[str, Any]:
        """What ``folds.json`` records and ``segkit.inference.ensemble`` applies."""
        record: dict[str, Any] = {"tta": self.tta}
        if kind == "binary":
            record.update(
                threshold=self.threshold, fill_holes=self.fill_holes, keep_largest=self.keep_largest
            )
        else:
            if kind == "multilabel":
                record["label_thresholds"] = list(self.label_thresholds)
            record.update({f"class_{step}": sorted(self.class_steps[step]) for step in STEPS})
        return record


# -- scoring one photo -------------------------------------------------------------------------------


def mask_of(photo: HeldOut, kind: str, settings: Settings) -> np.ndarray:
    """The photo's mask under ``settings``."""
    predicted = photo.predicted[settings.tta]
    if kind == "multiclass":
        return postprocess_classes(predicted, kind, settings.class_steps)
    if kind == "binary":
        mask = predicted.astype(np.float32) > settings.threshold
        return postprocess_mask(mask, settings.fill_holes, settings.keep_largest)
    thresholds = settings.label_thresholds or [DEFAULT_THRESHOLD] * len(predicted)
    mask = predicted.astype(np.float32) > np.asarray(thresholds, np.float32)[:, None, None]
    return postprocess_classes(mask, kind, settings.class_steps)


def class_counts(mask: np.ndarray, photo: HeldOut, kind: str, classes: int) -> np.ndarray:
    """``(classes, 3)``: intersection, predicted and true pixels of each class (ignored pixels out)."""
    counts = np.zeros((classes, 3), np.int64)
    if kind == "multiclass":
        keep = np.ones(mask.shape, bool) if photo.ignore is None else ~photo.ignore.reshape(mask.shape)
        for class_id in range(classes):
            predicted, true = (mask == class_id) & keep, (photo.truth == class_id) & keep
            counts[class_id] = ((predicted & true).sum(), predicted.sum(), true.sum())
        return counts
    planes = mask.reshape(classes, *mask.shape[-2:])
    truths = photo.truth.reshape(planes.shape) > 0
    keeps = np.ones(planes.shape, bool) if photo.ignore is None else ~photo.ignore.reshape(planes.shape)
    for index in range(classes):
        predicted, true = planes[index] & keeps[index], truths[index] & keeps[index]
        counts[index] = ((predicted & true).sum(), predicted.sum(), true.sum())
    return counts


def photo_score(counts: np.ndarray, kind: str, averaged: Sequence[int]) -> float:
    """The photo's score from its counts (see the module's docstring); NaN when no averaged class is
    in its truth or its prediction (multiclass)."""
    intersection, predicted, true = (counts[list(averaged)].T).astype(np.float64)
    if kind == "multiclass":
        union = predicted + true - intersection
        present = union > 0
        return float(np.mean(intersection[present] / union[present])) if present.any() else math.nan
    total = predicted + true
    dice = np.where(total > 0, 2 * intersection / np.maximum(total, 1), 1.0)  # both empty: 1
    return float(np.mean(dice))


def pooled_score(counts: np.ndarray, kind: str, averaged: Sequence[int]) -> float:
    """Over photos pooled: binary, mean per-photo Dice is the headline and is not pooled here; others,
    the mean over the averaged classes of IoU computed from the summed counts."""
    intersection, predicted, true = (counts.sum(axis=0)[list(averaged)].T).astype(np.float64)
    union = predicted + true - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else math.nan


class Scorer:
    """Scores of all held-out photos under a choice of settings (the counts of each photo kept)."""

    def __init__(self, photos: Sequence[HeldOut], kind: str, classes: int, averaged: Sequence[int]) -> None:
        self.photos, self.kind, self.classes, self.averaged = list(photos), kind, classes, list(averaged)

    def counts(self, settings: Settings) -> list[np.ndarray]:
        return [
            class_counts(mask_of(photo, self.kind, settings), photo, self.kind, self.classes)
            for photo in self.photos
        ]

    def scores(self, settings: Settings) -> np.ndarray:
        return np.array([photo_score(counts, self.kind, self.averaged) for counts in self.counts(settings)])


def paired_gain(without: np.ndarray, with_: np.ndarray) -> tuple[float, float, int]:
    """Mean of the per-photo differences and its standard error, over photos scored both ways."""
    both = np.isfinite(without) & np.isfinite(with_)
    differences = (with_ - without)[both]
    photos = int(both.sum())
    if photos < 2:
        return (float(differences.mean()) if photos else 0.0), math.inf, photos
    return float(differences.mean()), float(differences.std(ddof=1) / math.sqrt(photos)), photos


def decide(step: str, target: str, value: Any, without: np.ndarray, with_: np.ndarray) -> Choice:
    """The choice of a step tried: kept only when its paired gain exceeds its standard error."""
    gain, error, photos = paired_gain(without, with_)
    kept = gain > error and gain > 0
    mean_without = float(np.nanmean(without)) if np.isfinite(without).any() else math.nan
    mean_with = float(np.nanmean(with_)) if np.isfinite(with_).any() else math.nan
    return Choice(step, target, value, mean_without, mean_with, gain, error, photos, kept)


def choose(
    photos: Sequence[HeldOut], kind: str, class_names: Sequence[str], averaged: Sequence[int]
) -> tuple[Settings, list[Choice]]:
    """The inference settings the out-of-fold predictions support, and every step tried."""
    classes = len(class_names)
    scorer = Scorer(photos, kind, classes, averaged)
    settings = Settings(label_thresholds=[DEFAULT_THRESHOLD] * classes if kind == "multilabel" else [])
    choices: list[Choice] = []
    current = scorer.scores(settings)

    def attempt(step: str, target: str, value: Any, trial: Settings) -> None:
        nonlocal current, settings
        with_ = scorer.scores(trial)
        choice = decide(step, target, value, current, with_)
        choices.append(choice)
        if choice.kept:
            settings, current = trial, with_

    attempt("tta", "all", True, _replace(settings, tta=True))
    if kind == "binary":
        best = max(THRESHOLDS, key=lambda t: np.nanmean(scorer.scores(_replace(settings, threshold=t))))
        if best != DEFAULT_THRESHOLD:
            attempt("threshold", "all", best, _replace(settings, threshold=best))
        for step in STEPS:
            attempt(step, "all", True, _replace(settings, **{step: True}))
        return settings, choices
    if kind == "multilabel":
        for label, name in enumerate(class_names):

            def with_threshold(threshold: float, label: int = label) -> Settings:
                thresholds = list(settings.label_thresholds)
                thresholds[label] = threshold
                return _replace(settings, label_thresholds=thresholds)

            best = max(THRESHOLDS, key=lambda t: np.nanmean(scorer.scores(with_threshold(t))))
            if best != DEFAULT_THRESHOLD:
                attempt("threshold", name, best, with_threshold(best))
    for step in STEPS:
        for class_id in averaged:
            steps = {key: list(value) for key, value in settings.class_steps.items()}
            steps[step].append(class_id)
            attempt(step, class_names[class_id], True, _replace(settings, class_steps=steps))
    return settings, choices


def _replace(settings: Settings, **changes: Any) -> Settings:
    values = {**settings.__dict__, **changes}
    values["class_steps"] = {key: list(value) for key, value in values["class_steps"].items()}
    values["label_thresholds"] = list(values["label_thresholds"])
    return Settings(**values)


# -- predicting the held-out photos ------------------------------------------------------------------


def collect_held_out(trained: TrainedModel, fold: int, quiet: bool = False) -> list[HeldOut]:
    """Fold ``fold``'s held-out photos predicted by its model (``trained``), at each photo's own size,
    with flip TTA off and on."""
    _, data = evaluation_split(trained, "valid", None, None, (), trained.tiling)
    tiles = (
        None
        if trained.tiling is None
        else Tiles(trained.tiling["tile"], trained.tiling["overlap"], trained.tiling["blend"])
    )
    kind = trained.task.kind
    loader = torch.utils.data.DataLoader(data, batch_size=1, shuffle=False, num_workers=0)
    photos = []
    for index, batch in enumerate(
        progress(loader, quiet=quiet, desc=f"fold {fold} held out", unit="photo", leave=False)
    ):
        truth, ignore = _truth(data, index, batch, kind)
        size = (int(truth.shape[-2]), int(truth.shape[-1]))
        predicted: dict[bool, np.ndarray] = {}
        with torch.inference_mode():
            if tiles is not None:
                images = batch["image"].to(trained.device)
                both = {tta: tiles.logits(trained.model, images, tta).cpu() for tta in (False, True)}
            else:  # flip TTA is the mean of the two passes' logits (model_logits): two passes for both
                plain = predict_logits(trained, batch["image"]).cpu()
                flipped = predict_logits(trained, batch["image"].flip(-1)).cpu().flip(-1)
                both = {False: plain, True: (plain + flipped) / 2}
        for tta, logits in both.items():
            probabilities = trained.task.probabilities(resize_logits(logits, size))[0]
            if kind == "multiclass":
                predicted[tta] = probabilities.argmax(0).numpy().astype(np.uint8)
            else:
                maps = probabilities.numpy().astype(np.float16)
                predicted[tta] = maps[0] if kind == "binary" else maps
        photos.append(
            HeldOut(
                str(batch["name"][0]),
                fold,
                predicted,
                np.asarray(truth),
                None if ignore is None else np.asarray(ignore, bool),
            )
        )
    return photos


def _truth(data: Any, index: int, batch: dict[str, Any], kind: str) -> tuple[Any, Any]:
    """The photo's truth and ignored pixels at its own size, or at network size for a dataset that
    cannot read its masks at their own size (generated data)."""
    if hasattr(data, "original_mask"):
        return data.original_mask(index)
    truth, ignore = batch["mask"][0].numpy(), batch.get("ignore")
    ignore = None if ignore is None else ignore[0].numpy()
    if kind == "multilabel":
        return truth, ignore
    return truth[0], None if ignore is None else ignore[0]


def fold_table(scorer: Scorer, settings: Settings, folds: int) -> list[dict[str, Any]]:
    """One row per fold: its held-out photos and their score under ``settings`` (the headline's
    reduction: mean per-photo Dice for a binary task, pooled mean IoU for the others)."""
    counts = scorer.counts(settings)
    rows = []
    for fold in range(folds):
        picked = [index for index, photo in enumerate(scorer.photos) if photo.fold == fold]
        rows.append(
            {"fold": fold, "photos": len(picked), "score": _headline(scorer, [counts[i] for i in picked])}
        )
    return rows


def _headline(scorer: Scorer, counts: list[np.ndarray]) -> float:
    if not counts:
        return math.nan
    if scorer.kind == "binary":
        return float(np.mean([photo_score(c, "binary", scorer.averaged) for c in counts]))
    return pooled_score(np.stack(counts), scorer.kind, scorer.averaged)


def summarize(
    photos: Sequence[HeldOut], kind: str, class_names: Sequence[str], averaged: Sequence[int], folds: int
) -> dict[str, Any]:
    """The choices and the spread: what ``folds.json`` keeps under ``out_of_fold``."""
    settings, choices = choose(photos, kind, class_names, averaged)
    scorer = Scorer(photos, kind, len(class_names), averaged)
    untouched = Settings(
        label_thresholds=[DEFAULT_THRESHOLD] * len(class_names) if kind == "multilabel" else []
    )
    table_before = fold_table(scorer, untouched, folds)
    table = fold_table(scorer, settings, folds)
    for row, before in zip(table, table_before, strict=True):
        row["score_without_choices"] = before["score"]
    scores = np.array([row["score"] for row in table], dtype=np.float64)
    return {
        "inference": settings.inference(kind),
        "choices": [choice.record() for choice in choices],
        "folds": table,
        "mean": float(np.nanmean(scores)),
        "std": float(np.nanstd(scores, ddof=1)) if len(scores) > 1 else 0.0,
        "pooled": _headline(scorer, scorer.counts(settings)),
        "pooled_without_choices": _headline(scorer, scorer.counts(untouched)),
        "photos": len(photos),
    }


def metric_words(kind: str) -> str:
    """How the per-fold scores are computed, in one sentence."""
    where = "at each photo's own size, ignored pixels counting for nothing"
    if kind == "binary":
        return f"Dice per photo (1 where truth and mask are both empty), averaged over the photos, {where}"
    classes = "the foreground classes" if kind == "multiclass" else "the labels"
    return f"IoU per class from the pixels pooled over the photos, averaged over {classes}, {where}"


def describe_out_of_fold(summary: dict[str, Any]) -> list[str]:
    """The per-fold table, the spread and the choices, in lines for the terminal."""
    lines = [f"Out of fold ({summary['metric']}):"]
    for row in summary["folds"]:
        lines.append(
            f"  fold {row['fold']}: {row['score']:.4f} over {row['photos']} held-out photos "
            f"({row['score_without_choices']:.4f} before the choices)"
        )
    lines.append(
        f"  mean {summary['mean']:.4f} +- {summary['std']:.4f} (standard deviation over the folds); "
        f"all {summary['photos']} photos together {summary['pooled']:.4f}"
    )
    lines.append("Choices (kept only when the gain exceeds its standard error, photo by photo):")
    for choice in summary["choices"]:
        value = f" {choice['value']}" if choice["step"] == "threshold" else ""
        target = "" if choice["target"] in ("", "all") else f" ({choice['target']})"
        lines.append(
            f"  {choice['step']}{value}{target}: {choice['without']:.4f} -> {choice['with']:.4f}, gain "
            f"{choice['gain']:+.4f} vs standard error {choice['standard_error']:.4f}: "
            f"{'kept' if choice['kept'] else 'not kept'}"
        )
    return lines


def read_out_of_fold(parent: Path) -> dict[str, Any] | None:
    """A parent folder's out-of-fold summary (``folds.json``), or None before its folds are all done."""
    record = read_json_object(Path(parent) / FOLDS_FILE)
    return record.get("out_of_fold")
