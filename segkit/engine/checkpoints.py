"""The checkpoint layout of a run folder: what ``last.pt`` and ``best.pt`` hold, defined once.

``last.pt`` is written after every epoch (and, as epoch 0, before the first): everything ``--resume``
needs to continue exactly. ``best.pt`` is written when the selection score improves: what
``predict``, ``evaluate`` and ``export`` need, without the fields only ``--resume`` reads (which keeps
it at a third of ``last.pt``'s size with Adam).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import torch

from segkit.checkpoint_files import load_checkpoint, save_checkpoint
from segkit.engine.state import TrainingState
from segkit.errors import CheckpointError
from segkit.inference.predictor import load_state
from segkit.version import __version__

if TYPE_CHECKING:
    from segkit.engine.budget import RunClock
    from segkit.engine.data import RunData
    from segkit.engine.step import TrainingStep
    from segkit.engine.weight_average import WeightAverage
    from segkit.task import Task

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"

#: What only --resume needs: last.pt carries it, best.pt does not.
RESUME_ONLY_FIELDS = ("optimizer_state", "scaler_state", "rng_state", "raw_model_state", "ema_state")

#: The settings a checkpoint carries as inference defaults for predict and evaluate.
INFERENCE_DEFAULTS = ("tta", "fill_holes", "keep_largest")


def inference_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """What predict and evaluate do by default with this run's checkpoints: flip TTA and clean-up as
    the recipe chose, and, for runs trained on crops, tiles at native resolution (after ``scale``)."""
    table = {key: values[key] for key in INFERENCE_DEFAULTS}
    if values.get("crop_size") is not None or values.get("tile") is not None:
        tile = values["tile"] or 2 * values["crop_size"]
        table.update(tile=tile, overlap=values["overlap"], blend=values["blend"], scale=values["scale"])
    return table


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


def rng_state() -> dict[str, Any]:
    # legacy=True (the default) gives the global MT19937 state as a tuple, never the dict form
    numpy_state = cast("tuple[Any, ...]", np.random.get_state())
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state[0], numpy_state[1].numpy(), *numpy_state[2:]))
    torch.set_rng_state(state["torch"])


def save_last(run_dir: Path, payload: dict[str, Any]) -> Path:
    path = Path(run_dir) / LAST_FILE
    save_checkpoint(path, payload)
    return path


def save_best(run_dir: Path, payload: dict[str, Any]) -> Path:
    path = Path(run_dir) / BEST_FILE
    save_checkpoint(path, {k: v for k, v in payload.items() if k not in RESUME_ONLY_FIELDS})
    return path


class CheckpointedRun(Protocol):
    """What a checkpoint is made from and restored into: the parts of a run (``Trainer`` is one) that
    ``checkpoint_payload`` reads and ``load_for_resume`` restores, named here once."""

    values: dict[str, Any]
    state: TrainingState
    task: Task
    model_name: str
    in_channels: int
    data: RunData  # its train split's normalization
    model: torch.nn.Module  # the weights being trained
    evaluated_model: torch.nn.Module  # what predict uses: the weight average where there is one
    weight_average: WeightAverage | None
    optimizer: torch.optim.Optimizer
    step: TrainingStep  # its gradient scaler's state
    clock: RunClock  # elapsed time and the budget's estimates


def load_for_resume(run_dir: Path, trainer: CheckpointedRun) -> TrainingState:
    """Restore the model, weight average, optimizer, scaler and RNGs of ``trainer`` from the run's
    ``last.pt``; returns the training state it saved. Mismatches are one-line ``CheckpointError``s."""
    path = Path(run_dir) / LAST_FILE
    payload = load_checkpoint(path)
    trained_state = payload.get("raw_model_state") or payload["model_state"]
    load_state(trainer.model, trained_state, path, trainer.model_name)  # one line on a mismatch
    try:
        if trainer.weight_average is not None:
            trainer.weight_average.load_state_dict(payload["ema_state"], payload["model_state"])
        trainer.optimizer.load_state_dict(payload["optimizer_state"])
        trainer.step.load_state_dict(payload.get("scaler_state") or {})
        state = TrainingState.from_checkpoint(payload)
        restore_rng(payload["rng_state"])
    except KeyError as error:
        raise CheckpointError(f"{path} cannot be resumed from: it lacks {error}") from None
    except (ValueError, TypeError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"{path} cannot be resumed from: {type(error).__name__}: {str(error)[:200]}"
        ) from None
    return state


def checkpoint_payload(trainer: CheckpointedRun) -> dict[str, Any]:
    """Everything ``last.pt`` holds for ``trainer`` as it stands now (``best.pt`` holds a subset)."""
    values, state = trainer.values, trainer.state
    last = state.last_record
    # The validation-calibrated threshold, when the recipe asks for one; predict/evaluate use it.
    task = trainer.task.with_threshold(last.get("calibrated_threshold", values["threshold"]))
    normalization = getattr(trainer.data.train_set, "normalization", None)
    payload = {
        **model_fields(trainer.model_name, values, trainer.in_channels, normalization, task),
        "metrics": last,
        **state.state_dict(trainer.clock.elapsed(), trainer.clock.estimates()),
        "model_state": cpu_state(trainer.evaluated_model),
        "optimizer_state": trainer.optimizer.state_dict(),
        "scaler_state": trainer.step.state_dict(),
        "rng_state": rng_state(),
        "config": values,
    }
    if trainer.data.fold is not None:  # a fold run's splits, for evaluate and report
        payload["fold"] = trainer.data.fold
    if trainer.weight_average is not None:  # the trained weights too, which --resume continues from
        payload["raw_model_state"] = cpu_state(trainer.model)
        payload["ema_state"] = trainer.weight_average.state_dict()
    return payload


def model_fields(
    model_name: str, values: dict[str, Any], in_channels: int, normalization: Any, task: Task
) -> dict[str, Any]:
    """What inference needs to rebuild and use the model (``segkit.inference.predictor``): every
    checkpoint holds these, trained or imported."""
    return {
        "segkit_version": __version__,
        "model_name": model_name,
        "model_options": values["model_options"],
        "in_channels": in_channels,
        "image_size": values["image_size"],
        "normalization": normalization,
        **task.checkpoint_fields(),
        "inference": inference_defaults(values),
        "dataset": values["dataset"],
    }


def imported_payload(
    model_name: str,
    values: dict[str, Any],
    in_channels: int,
    normalization: Any,
    task: Task,
    model_state: dict[str, torch.Tensor],
) -> dict[str, Any]:
    """``best.pt`` of weights trained outside segkit (``segkit.Run.from_model``): epoch 0, marked
    ``imported`` (no "untrained weights" warning), no history and nothing to resume from."""
    return {
        **model_fields(model_name, values, in_channels, normalization, task),
        "imported": True,
        "epoch": 0,
        "metrics": {},
        "history": [],
        "model_state": {key: value.detach().cpu() for key, value in model_state.items()},
        "config": values,
    }
