"""A run folder for weights trained outside segkit (``segkit.Run.from_model``): the settings resolved
as ``segkit.train`` resolves them, the task and input channels read from the dataset as a run reads
them, and a ``best.pt`` that says it was imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from segkit.checkpoint_files import save_checkpoint
from segkit.components import create_model
from segkit.config.resolve import resolve_run_config
from segkit.config.run_folder import CONFIG_FILE, create_run_dir, write_json
from segkit.data.splits import build_split
from segkit.engine.checkpoints import BEST_FILE, imported_payload
from segkit.errors import UsageError
from segkit.inference.predictor import load_state
from segkit.task import task_for_dataset
from segkit.version import __version__

SOURCE = "Run.from_model()"


def write_imported_run(model: Any, model_name: str, settings: dict[str, Any]) -> Path:
    """Write the run folder and return its path; nothing is written when a check fails."""
    state = _state_dict(model)
    normalization = settings.pop("normalization", None)
    config = resolve_run_config({}, None, None, python=({**settings, "model": model_name}, SOURCE))
    values = config.values
    train_set = build_split(values, "train", values["image_size"], None)
    in_channels = int(train_set[0]["image"].shape[0])
    task = task_for_dataset(train_set, values["threshold"])
    try:
        built = create_model(
            model_name, in_channels=in_channels, out_channels=task.out_channels, **values["model_options"]
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"{SOURCE}: model {model_name!r} cannot be built so: {error}") from None
    where = Path(f"the weights given to {SOURCE}")
    load_state(built, state, where, model_name)  # one line when they do not fit (another width, classes)
    if normalization is None:
        normalization = getattr(train_set, "normalization", None)
    values = _as_recorded(values)
    run_dir = create_run_dir(Path(values["out"]), model_name, "imported")
    payload = imported_payload(model_name, values, in_channels, normalization, task, state)
    save_checkpoint(run_dir / BEST_FILE, payload)
    write_json(
        run_dir / CONFIG_FILE,
        {
            "segkit_version": __version__,
            "config": values,
            "sources": config.sources,
            "imported": True,
            "resolved": {"in_channels": in_channels, "task": task.kind},
        },
    )
    return run_dir


def _state_dict(model: Any) -> dict[str, torch.Tensor]:
    if isinstance(model, torch.nn.Module):
        return model.state_dict()
    if isinstance(model, dict) and all(isinstance(value, torch.Tensor) for value in model.values()):
        return model
    raise UsageError(
        f"{SOURCE} takes an nn.Module or its state_dict (a dict of tensors), got {type(model).__name__}"
    )


def _as_recorded(values: dict[str, Any]) -> dict[str, Any]:
    """The settings as config.json and checkpoints record them (paths as strings)."""
    import json

    return json.loads(json.dumps(values, default=str))
