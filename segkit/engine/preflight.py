"""What a run checks before it trains, without training and without writing anything: what
``segkit run --print-config`` (and ``segkit plan --print-config``) must refuse exactly as the run
would, in the run's order and words."""

from __future__ import annotations

import json
from pathlib import Path

from segkit.checkpoint_files import load_checkpoint
from segkit.config.checks import check_resumable
from segkit.config.resolve import ResolvedConfig
from segkit.engine.checkpoints import LAST_FILE
from segkit.engine.data import RunData
from segkit.engine.distributed import ProcessGroup
from segkit.engine.state import TrainingState
from segkit.engine.trainer import check_loss_task, fit_default_loss_to_task
from segkit.execution.device import resolve_amp, resolve_device
from segkit.task import task_for_dataset


def check_before_training(config: ResolvedConfig, resume_dir: Path | None = None) -> None:
    """What a run checks before it trains, in its order and words, writing nothing: for --print-config,
    which must refuse what the run would refuse. Resolution has checked the settings and the
    components' declared options; here the device, the data (both splits built as the run builds
    them), the loss against the data's task and, for --resume, whether anything is left to train."""
    values = json.loads(json.dumps(config.values, default=str))  # as the run holds them
    device = resolve_device(values["device"])
    resolve_amp(values["amp"], device)
    data = RunData(values, device, ProcessGroup())
    task_kind = task_for_dataset(data.train_set, values["threshold"]).kind
    if fit_default_loss_to_task(values, config.sources, task_kind):  # printed as the run will train it
        config.values["loss"] = values["loss"]
    check_loss_task(values["loss"], task_kind)
    if resume_dir is not None:
        state = TrainingState.from_checkpoint(load_checkpoint(Path(resume_dir) / LAST_FILE))
        check_resumable(Path(resume_dir), state.epoch, state.elapsed_before, values)
