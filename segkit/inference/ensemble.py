"""The models of a ``--folds`` run as one: each fold's probabilities (after its own flip TTA, when TTA
is on) averaged, then one threshold or argmax, with the choices made on the out-of-fold predictions.

``EnsembleModule`` is an ``nn.Module`` whose output are logits of the averaged probabilities (the
log-odds of the mean for sigmoid tasks, the log of the mean for a softmax one), so everything that
reads a model's logits (predict, evaluate, tiles, export) reads the ensemble unchanged; per-label
thresholds of a multilabel ensemble are folded into its logits (0.5 then stands for each label's own).
``load_ensemble`` builds the ``TrainedModel`` of a parent folder (``folds.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from segkit.config.run_folder import FOLDS_FILE, finished_folds, fold_folder, read_json_object
from segkit.errors import CheckpointError, UsageError
from segkit.inference.forward import model_logits

#: Probabilities are kept this far from 0 and 1 before they become logits again.
EPSILON = 1e-7


class EnsembleModule(nn.Module):
    """The mean of the members' probabilities, as logits. ``kind``: "binary", "multiclass" or
    "multilabel"; ``label_thresholds``: a multilabel ensemble's threshold per label (folded in)."""

    def __init__(
        self, members: list[nn.Module], kind: str, label_thresholds: list[float] | None = None
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.kind = kind
        shift = torch.zeros(len(label_thresholds or []))
        if label_thresholds:
            shift = torch.logit(torch.tensor(label_thresholds, dtype=torch.float32))
        self.register_buffer("shift", shift.view(1, -1, 1, 1) if label_thresholds else shift)

    def mean_probabilities(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        total = None
        for member in self.members:
            logits = model_logits(member, images, tta)
            probabilities = torch.softmax(logits, 1) if self.kind == "multiclass" else torch.sigmoid(logits)
            total = probabilities if total is None else total + probabilities
        assert total is not None
        return total / len(self.members)

    def logits_with_tta(self, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
        """Logits of the averaged probabilities, each member's flip TTA first when ``tta``."""
        mean = self.mean_probabilities(images, tta)
        if self.kind == "multiclass":
            return mean.clamp_min(EPSILON).log()
        logits = mean.clamp(EPSILON, 1 - EPSILON).logit()
        shift: torch.Tensor = self.shift  # type: ignore[assignment]
        return logits - shift if shift.numel() else logits

    @property
    def export_blocker(self) -> str | None:
        """Why a member cannot be exported with any input size (``segkit export`` asks), or None."""
        reasons = [getattr(member, "export_blocker", None) for member in self.members]
        return next((reason for reason in reasons if reason), None)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits_with_tta(images, tta=False)


def fold_folders(parent: Path, record: dict[str, Any]) -> list[Path]:
    """The fold runs' folders of a parent, fold 0 first; a fold not trained yet is a usage error."""
    folds = int(record.get("folds", 0))
    done = set(finished_folds(parent, folds))
    missing = [index for index in range(folds) if index not in done]
    if missing:
        raise UsageError(
            f"{parent} holds {folds - len(missing)} of its {folds} folds trained (not: fold "
            f"{', '.join(map(str, missing))}): finish them with segkit run --resume {parent}"
        )
    return [fold_folder(parent, index) for index in range(folds)]


def load_ensemble(parent: Path, device: Any, fold_batchnorm: bool = True) -> Any:
    """The ``TrainedModel`` of a parent folder: its folds' models averaged, with the choices
    ``folds.json`` records (TTA, threshold, post-processing) as its defaults."""
    from segkit.inference.predictor import TrainedModel, load_trained_model

    parent = Path(parent)
    record = read_json_object(parent / FOLDS_FILE)
    members = [load_trained_model(folder, device, fold_batchnorm) for folder in fold_folders(parent, record)]
    first = members[0]
    for member in members[1:]:
        for what in ("image_size", "normalization", "tiling", "in_channels"):
            if getattr(member, what) != getattr(first, what):
                raise CheckpointError(
                    f"{member.path} differs from {first.path} in {what}: the folds cannot be averaged"
                )
        if member.task.kind != first.task.kind or member.task.class_names != first.task.class_names:
            raise CheckpointError(f"{member.path} and {first.path} segment other classes")
    chosen = record.get("inference") or {}
    label_thresholds = chosen.get("label_thresholds") if first.task.kind == "multilabel" else None
    model = EnsembleModule([member.model for member in members], first.task.kind, label_thresholds)
    threshold = (
        float(chosen.get("threshold", first.threshold)) if first.task.kind == "binary" else first.threshold
    )
    checkpoint = {key: value for key, value in first.checkpoint.items() if key not in ("fold", "model_state")}
    tta = bool(chosen.get("tta", first.tta))
    postprocess = {step: bool(chosen.get(step, False)) for step in ("fill_holes", "keep_largest")}
    checkpoint["inference"] = {**(checkpoint.get("inference") or {}), "tta": tta, **postprocess}
    checkpoint["threshold"] = threshold
    checkpoint["ensemble"] = {"folds": len(members), "members": [str(member.path) for member in members]}
    return TrainedModel(
        model=model,
        model_name=first.model_name,
        image_size=first.image_size,
        normalization=first.normalization,
        threshold=threshold,
        checkpoint=checkpoint,
        path=parent,
        device=first.device,
        tta=tta,
        postprocess=postprocess if first.task.kind == "binary" else {},
        task=first.task.with_threshold(threshold),
        tiling=first.tiling,
        class_postprocess={
            step: [int(c) for c in chosen.get(f"class_{step}", [])] for step in ("fill_holes", "keep_largest")
        },
    )
