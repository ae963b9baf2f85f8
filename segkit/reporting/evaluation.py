"""Evaluation of a trained model on a dataset split, at network and at original resolution.

Network resolution compares the prediction with the mask as the dataset resized it for the network.
Original resolution resizes the predicted logits back to each image's own size (as ``predict`` does)
and compares with the mask read from disk; that is what a user of the masks gets, and it needs the
dataset to offer ``original_mask(index)``. Every figure carries its split, resolution, threshold and
reduction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from segkit.execution.fast_path import to_input_format
from segkit.inference.postprocess import postprocess_classes, postprocess_mask
from segkit.inference.predictor import TrainedModel, predict_logits, resize_logits
from segkit.inference.tiling import Tiles
from segkit.metrics.binary import MetricAccumulator
from segkit.metrics.boundary import boundary_f_score, hausdorff_distance
from segkit.progress import progress
from segkit.task import Task


@dataclass
class Evaluation:
    split: str
    threshold: float
    tta: bool
    network: Any  # MetricAccumulator (binary) or ClassMetricAccumulator (several classes)
    original: Any
    boundary: list[dict[str, float]] = field(default_factory=list)
    network_resolution: str = ""
    postprocess: dict[str, bool] = field(default_factory=dict)
    task_kind: str = "binary"

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "split": self.split,
            "threshold": self.threshold if self.task_kind != "multiclass" else "none (argmax)",
            "test_time_augmentation": "horizontal flip" if self.tta else "none",
            "postprocess": describe_postprocess(self.postprocess),
            "images": len(self.network),
            "reductions": {
                "per_image": "mean of per-image scores (an image with empty truth and empty "
                "prediction scores 1)",
                "dataset": "scores of the confusion counts pooled over the split",
            },
            "network_resolution": {
                "resolution": self.network_resolution,
                **self.network.compute(),
            },
        }
        if self.original is not None:
            result["original_resolution"] = {
                "resolution": "each image's original mask size",
                **self.original.compute(),
            }
        if self.task_kind != "binary":
            result["task"] = self.task_kind
            result["classes"] = list(self.primary.class_names)
        if self.task_kind == "multiclass":
            confusion = self.primary.confusion
            result["confusion_matrix"] = {
                "classes": list(self.primary.class_names),
                "rows": "truth",
                "columns": "prediction",
                "pixels": confusion.tolist(),
            }
        if self.boundary:
            result["boundary"] = {
                "resolution": "original" if self.original is not None else "network",
                "hd95_pixels_mean": mean_of_finite([b["hd95"] for b in self.boundary]),
                "boundary_f1_mean": mean_of_finite([b["boundary_f1"] for b in self.boundary]),
            }
        return result

    @property
    def primary(self) -> Any:
        """The accumulator whose figures a user reads first: original resolution where it was scored."""
        return self.original if self.original is not None else self.network

    def per_image_rows(self) -> list[dict[str, Any]]:
        primary = self.primary
        if not isinstance(primary, MetricAccumulator):  # several classes: every class's scores
            return primary.per_image()
        rows = []
        for index, row in enumerate(primary.per_image()):
            entry = {
                "name": row["name"],
                "dice": row["dice"],
                "iou": row["iou"],
                "foreground_fraction": row["foreground_fraction"],
            }
            if self.boundary:
                entry.update(self.boundary[index])
            rows.append(entry)
        return rows


def describe_postprocess(steps: dict[str, bool] | None) -> str:
    chosen = [name.replace("_", " ") for name, on in (steps or {}).items() if on]
    return ", ".join(chosen) if chosen else "none"


def mean_of_finite(values: list[float]) -> float | None:
    """The mean of the finite values (a boundary score is None or inf where a mask is empty); None
    when there is none, which summary.json writes as null."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_dataset(
    trained: TrainedModel,
    dataset,
    *,
    split: str,
    threshold: float,
    tta: bool = False,
    batch_size: int = 8,
    original_resolution: bool = True,
    boundary: bool = True,
    quiet: bool = False,
    postprocess: dict[str, bool] | None = None,
    tiles: Tiles | None = None,
) -> Evaluation:
    """Score ``trained`` on ``dataset``. ``postprocess`` (``fill_holes``, ``keep_largest``) cleans each
    thresholded mask up before it is scored, at every resolution, as ``predict`` would. ``tiles``
    (``segkit.inference.tiling.Tiles``) runs the model through tiles of each photo at native resolution
    (the dataset then yields whole photos, see ``segkit.data.sampling.Sampling.native``)."""
    steps: dict[str, bool] = {k: v for k, v in (postprocess or {}).items() if v}
    class_steps = getattr(trained, "class_postprocess", None)
    task = trained.task.with_threshold(threshold)
    network = task.new_accumulator()
    use_original = original_resolution and hasattr(dataset, "original_mask")
    original = task.new_accumulator() if use_original else None
    boundary_rows: list[dict[str, float]] = []
    batch_size = 1 if tiles is not None else batch_size  # native photos differ in size
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    index = 0
    for batch in progress(loader, quiet=quiet, desc=f"evaluate {split}", unit="batch", leave=False):
        if tiles is not None:
            with torch.inference_mode():
                images = to_input_format(batch["image"], trained.device, training=False)
                logits = tiles.logits(trained.model, images, tta).cpu()
        else:
            logits = predict_logits(trained, batch["image"], tta=tta).cpu()
        names = list(batch["name"])
        network_logits = cleaned_logits(logits, task, steps, class_steps)
        network.update(network_logits, batch["mask"], ignore=batch.get("ignore"), names=names)
        for offset, name in enumerate(names):
            if original is not None:  # i.e. use_original
                mask, ignore = dataset.original_mask(index + offset)
                truth = _as_batch(mask, torch.int64 if task.kind == "multiclass" else torch.float32)
                size = (int(truth.shape[-2]), int(truth.shape[-1]))
                full = cleaned_logits(
                    resize_logits(logits[offset : offset + 1], size), task, steps, class_steps
                )
                ignored = None if ignore is None else _as_batch(ignore, torch.bool)
                original.update(full, truth, ignore=ignored, names=[name])
            else:
                full, truth = network_logits[offset : offset + 1], batch["mask"][offset : offset + 1]
            if boundary and task.kind == "binary":  # boundary metrics are defined for binary masks
                predicted, expected = task.predict_mask(full)[0].numpy(), truth[0, 0].numpy() > 0.5
                boundary_rows.append(
                    {
                        "hd95": hausdorff_distance(predicted, expected),
                        "boundary_f1": boundary_f_score(predicted, expected),
                    }
                )
        index += len(names)
    where = (
        f"native resolution, {tiles.size}x{tiles.size} tiles"
        if tiles is not None
        else f"{trained.image_size}x{trained.image_size} network input"
    )
    return Evaluation(split, threshold, tta, network, original, boundary_rows, where, steps, task.kind)


def _as_batch(array: Any, dtype: torch.dtype) -> torch.Tensor:
    """A mask read at original size, (H, W) or (K, H, W), as a batch of one (1, C, H, W)."""
    tensor = torch.as_tensor(np.asarray(array), dtype=dtype)
    while tensor.dim() < 4:
        tensor = tensor[None]
    return tensor


#: Logit standing in for "certainly foreground/background" once a mask has been post-processed.
_DECIDED_LOGIT = 30.0


def cleaned_logits(
    logits: torch.Tensor, task: Task, steps: dict[str, bool], class_steps: dict[str, list[int]] | None = None
) -> torch.Tensor:
    """``(N, 1, H, W)`` logits, or, when post-processing is asked for, each image's predicted mask
    cleaned up and turned back into decided logits (+-30) that any threshold reads the same way.
    ``class_steps`` (a fold ensemble's clean-up per class or label) does the same for the other tasks."""
    if task.kind != "binary" and class_steps and any(class_steps.values()):
        masks = [
            postprocess_classes(mask.numpy(), task.kind, class_steps)
            for mask in task.predict_mask(logits.cpu())
        ]
        decided = torch.as_tensor(np.stack(masks))
        if task.kind == "multiclass":
            decided = torch.nn.functional.one_hot(decided.long(), logits.shape[1]).permute(0, 3, 1, 2).bool()
        return torch.where(decided, _DECIDED_LOGIT, -_DECIDED_LOGIT).to(logits.dtype)
    if not steps:
        return logits
    masks = [postprocess_mask(mask.numpy(), **steps) for mask in task.predict_mask(logits.cpu())]
    decided = torch.as_tensor(np.stack(masks))[:, None]
    return torch.where(decided, _DECIDED_LOGIT, -_DECIDED_LOGIT).to(logits.dtype)
