"""``fit``: the training run behind ``segkit run``, told as a story of parts.

- ``segkit.engine.data``: the splits' loaders (``RunData``, progressive resizing);
- ``segkit.engine.step``: one optimizer step (AMP, NaN policy, gradient accumulation, weight average);
- ``segkit.engine.loop``: an epoch of steps, and the evaluation of a loader;
- ``segkit.engine.validation``: the end-of-epoch validation;
- ``segkit.engine.budget``: progress and the time budget;
- ``segkit.engine.state``: where the run stands (epoch, step, best, history);
- ``segkit.engine.checkpoints``: what ``last.pt`` and ``best.pt`` hold;
- ``segkit.task``: what the task means (output channels, metrics, what checkpoints say).

``Trainer.__init__`` builds the parts; ``Trainer.run`` is the loop over epochs.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from segkit.callbacks import RunContext
from segkit.components import create_callback, create_loss, create_model, get_component
from segkit.config.checks import check_resumable
from segkit.config.resolve import DEFAULT_SOURCE, ResolvedConfig, enabled_callbacks
from segkit.config.run_folder import CONFIG_FILE, FOLD_FILE, create_run_dir, read_run_config, write_json
from segkit.engine import checkpoints, distributed
from segkit.engine.budget import RunClock
from segkit.engine.data import RunData
from segkit.engine.freezing import EncoderFreeze
from segkit.engine.loop import EpochStats, train_one_epoch
from segkit.engine.schedule import build_optimizer, learning_rate_factor, set_learning_rate
from segkit.engine.state import TrainingState
from segkit.engine.step import TrainingStep
from segkit.engine.validation import Validation, validate
from segkit.engine.weight_average import WeightAverage
from segkit.errors import SegkitError, UsageError
from segkit.execution.device import resolve_amp, resolve_device
from segkit.execution.fast_path import prepare_for_training, resolve_channels_last
from segkit.losses import check_loss_task as check_loss_metadata
from segkit.losses import loss_tasks
from segkit.models.init_weights import init_from_file
from segkit.task import selection_label, settings_left_out, task_for_dataset
from segkit.version import __version__

Echo = Callable[[str], None]
BUDGET_REACHED = "time budget reached"
PAUSED = "paused (a race slice ended); resume continues the same schedule"


@dataclass
class RunResult:
    run_dir: Path
    best_dice: float
    best_epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""
    metric_description: str = ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    config: ResolvedConfig,
    echo: Echo = print,
    resume_dir: Path | None = None,
    callbacks: Sequence[Any] = (),
    pause_at_s: float | None = None,
    run_dir: Path | None = None,
) -> RunResult:
    """Train according to ``config``; with ``resume_dir``, continue that run from its ``last.pt``.
    ``callbacks``: objects with any of ``segkit.callbacks.Callback``'s methods, run after the named
    ones (the Python API passes them; ``config.json`` records them by class name). ``pause_at_s``:
    stop once the run has spent that many seconds (``segkit.engine.budget.RunClock``), resumable.
    ``run_dir``: a new run's folder, made here (it must not exist yet), instead of one under --out."""
    trainer = Trainer(config, echo, resume_dir, callbacks, run_dir)
    trainer.pause_at_s = pause_at_s
    return trainer.run()


class Trainer:
    def __init__(
        self,
        config: ResolvedConfig,
        echo: Echo = print,
        resume_dir: Path | None = None,
        callbacks: Sequence[Any] = (),
        run_dir: Path | None = None,
    ) -> None:
        # Paths become strings, so checkpoints hold only what torch.load(weights_only=True) accepts.
        self.values = values = json.loads(json.dumps(config.values, default=str))
        self.sources = config.sources
        #: The planner's plan (--recipe auto): written to plan.json; its seconds count in the budget.
        self.plan = getattr(config, "plan", None)
        self._setup_runtime()
        self.echo = echo if self.group.is_main else _silent
        if not self.group.is_main:
            self.values = values = {**values, "quiet": True}
        seed_everything(values["seed"])
        self._fit_progressive_sizes_to_crops()
        #: A fold run's fold (``segkit.data.folds``): its splits are the fold's; fold.json records it.
        self.fold = getattr(config, "fold", None)
        self.data = RunData(values, self.device, self.group, self.fold)
        self.in_channels = int(self.data.train_set[0]["image"].shape[0])
        self.task = task_for_dataset(self.data.train_set, values["threshold"])
        self._leave_out_what_the_task_cannot_use()
        self.resumed = resume_dir is not None
        self.callback_objects = list(callbacks)
        self.pause_at_s: float | None = None
        self._build_model_and_step()
        self.state = TrainingState()
        if resume_dir is not None:
            self.run_dir = Path(resume_dir)
            self.state = checkpoints.load_for_resume(self.run_dir, self)
            check_resumable(self.run_dir, self.state.epoch, self.state.elapsed_before, values)
            self.echo(f"Resuming {self.run_dir} at epoch {self.state.epoch + 1} of {values['epochs']}")
        else:
            self.run_dir = distributed.on_main(
                self.group,
                lambda: (
                    create_run_dir(Path(values["out"]), self.model_name, values["loss"])
                    if run_dir is None
                    else _make_folder(Path(run_dir))
                ),
            )
            if self.plan is not None:
                self.state.elapsed_before = self.plan.seconds
        steps_per_epoch = math.ceil(self.data.micro_batches_per_epoch() / values["accumulate_steps"])
        self.total_steps = steps_per_epoch * values["epochs"]
        self.callbacks: list = []  # rank 0's alone
        distributed.on_main(self.group, self._build_callbacks)
        self.metric_text = selection_label(self.task, _validation_resolution(values))

    def _build_callbacks(self) -> None:
        try:
            self.callbacks = _build_callbacks(self.values, self.run_dir) + self.callback_objects
        except BaseException:
            if not self.resumed:  # setup failed: leave no run folder behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _setup_runtime(self) -> None:
        values = self.values
        self.device = resolve_device(values["device"])
        self.amp_dtype = resolve_amp(values["amp"], self.device)
        self.channels_last = resolve_channels_last(values["channels_last"], self.device, training=True)
        self.group = distributed.setup(self.device)
        if self.device.type == "cuda" and self.group.enabled:
            self.device = torch.device("cuda", self.group.local_rank)

    def _fit_progressive_sizes_to_crops(self) -> None:
        """With --crop-size, progressive sizes are crop sizes; stages that do not end at the crop
        size are left out (the last stage must train at the size tiles were chosen for)."""
        sizes, crop = self.values["progressive_sizes"], self.values.get("crop_size")
        if crop is None or not sizes:
            return
        if sizes[-1] == crop:
            self.echo(f"Progressive sizes {', '.join(map(str, sizes))} are crop sizes (--crop-size {crop})")
        else:
            self.values["progressive_sizes"] = []
            self.echo(
                f"Left out: progressive sizes {', '.join(map(str, sizes))} (with --crop-size they are crop "
                f"sizes and must end at {crop}); every crop is {crop}x{crop}"
            )

    def _leave_out_what_the_task_cannot_use(self) -> None:
        switched = fit_default_loss_to_task(self.values, self.sources, self.task.kind)
        if switched:
            self.echo(switched)
        check_loss_task(self.values["loss"], self.task.kind)
        for key, reason in settings_left_out(self.task, self.values).items():
            self.values[key] = False
            self.echo(f"Left out for this {self.task.kind} task: {key} ({reason})")

    def _build_model_and_step(self) -> None:
        values = self.values
        self.model_name = values["model"]
        self.model = _create_model(self.model_name, self.in_channels, self.task.out_channels, values)
        if values["init_from"] and not self.resumed:  # a resumed run continues from its last.pt
            report = init_from_file(self.model, Path(values["init_from"]))
            if not values["quiet"]:
                self.echo(report.summary())
        self.freeze = None
        if values["freeze_encoder"]:
            fraction = values["freeze_encoder"]
            self.freeze = EncoderFreeze(self.model, fraction, self.model_name, self.group.enabled)
            if not values["quiet"]:
                self.echo(self.freeze.describe())
        # In place: moves the model, sets the memory format and backend flags. The thread count is
        # left as the process has it (threads=0): the CLI and the tests choose it, not the engine.
        prepare_for_training(self.model, self.device, channels_last=self.channels_last, threads=0)
        trained = DistributedDataParallel(self.model) if self.group.enabled else self.model
        self.loss_fn = create_loss(values["loss"], **values["loss_options"])
        self.optimizer = build_optimizer(
            values["optimizer"], self.model.parameters(), values["learning_rate"], values["weight_decay"]
        )
        # With ema_decay, validation, best.pt and prediction use the weight average; training the model.
        self.weight_average = WeightAverage(self.model, values["ema_decay"]) if values["ema_decay"] else None
        self.evaluated_model = self.weight_average.averaged if self.weight_average else self.model
        self.step = TrainingStep(
            trained,
            self.loss_fn,
            self.optimizer,
            self.task,
            device=self.device,
            amp_dtype=self.amp_dtype,
            channels_last=self.channels_last,
            on_nan=values["on_nan"],
            weight_average=self.weight_average,
            trained_module=self.model,
            group=self.group,
        )

    # -- the story of a run ----------------------------------------------------------------------

    def run(self) -> RunResult:
        distributed.on_main(self.group, self._write_run_config)
        self.echo(
            f"Device {self.device}, {self.data.workers} loader workers, "
            f"{len(self.data.train_set)} train {'crops' if self.data.crops else 'images'} "
            f"/ {len(self.data.valid_set)} valid images"
        )
        self.echo(f"Run folder: {self.run_dir}")
        self.context = RunContext(self.run_dir, self.values, self.model_name, history=self.state.history)
        self.valid_loader = self.data.valid_loader()
        self.clock = RunClock(
            self.total_steps,
            self.values["time_budget"],
            self.state.elapsed_before,
            self.state.clock_estimates,
            pause_at_s=self.pause_at_s,
        )
        distributed.on_main(self.group, self._start_on_main)
        self.saved_epoch = self.state.epoch  # a Ctrl-C during last.pt's write leaves the epoch before
        stop_reason = ""
        try:
            for epoch in range(self.state.epoch + 1, self.values["epochs"] + 1):
                stop_reason = self._run_epoch(epoch)
                if stop_reason:
                    break
        except KeyboardInterrupt:
            # last.pt always holds the last completed epoch (epoch 0: the initial weights), so --resume
            # repeats the unfinished epoch exactly as an uninterrupted run would.
            last = self.run_dir / checkpoints.LAST_FILE
            self.echo(
                f"Interrupted: {last} holds epoch {self.saved_epoch}; "
                f"continue with: segkit run --resume {self.run_dir}"
            )
            self._notify("on_fit_end")
            raise
        except BaseException as error:
            self._notify("on_exception", error)
            if distributed.peer_gone(self.group, error):  # its own output and torchrun's say why
                raise SegkitError(
                    f"another process of this torchrun run ended: rank {self.group.rank} of "
                    f"{self.group.world_size} lost its connection (torchrun's summary says which and why); "
                    f"{self.run_dir / checkpoints.LAST_FILE} holds epoch {self.saved_epoch}: continue with "
                    f"torchrun ... -m segkit run --resume {self.run_dir}"
                ) from None
            raise
        self._notify("on_fit_end")
        distributed.teardown(self.group)
        state = self.state
        if state.epoch == 0 and stop_reason != PAUSED:
            raise SegkitError(
                f"no epoch was trained ({stop_reason or 'stopped'} before the first one ended, after "
                f"{self.clock.elapsed():.0f} s); {self.run_dir / checkpoints.LAST_FILE} holds the initial "
                f"weights. Give more time: segkit run --resume {self.run_dir} --time-budget "
                f"{_longer_budget(self.values['time_budget'])}"
            )
        return RunResult(
            self.run_dir, state.best_score, state.best_epoch, state.history, stop_reason, self.metric_text
        )

    def _start_on_main(self) -> None:
        """The first checkpoint and the callbacks' start (rank 0 alone: see ``distributed.on_main``)."""
        if not self.resumed:
            checkpoints.save_last(self.run_dir, checkpoints.checkpoint_payload(self))
        self._notify("on_fit_start")

    def _run_epoch(self, epoch: int) -> str:
        """Train, validate, record and save one epoch; returns why the run stops now ("" to go on)."""
        self.context.epoch = epoch
        started = time.monotonic()
        stats = self._train_epoch(epoch)
        train_seconds = time.monotonic() - started
        if stats.steps == 0 and stats.stopped_early:
            return self._budget_or_pause()
        # Checked before validation, whose metrics would otherwise fail on NaN logits less clearly.
        finite = all(torch.isfinite(parameter).all() for parameter in self.model.parameters())
        if distributed.any_across(self.group, not finite):
            raise SegkitError(f"model weights became non-finite in epoch {epoch}; best.pt is left as it was")
        valid_started = time.monotonic()
        validation = validate(
            self.evaluated_model,
            self.valid_loader,
            self.loss_fn,
            self.task,
            self.values,
            self.device,
            self.amp_dtype,
            self.group,
        )
        self._pool_train_stats(stats)
        self.clock.validation_seconds = time.monotonic() - valid_started
        record = self._epoch_record(epoch, stats, validation, started, train_seconds)
        improved = self.state.add_epoch(record, record[self.task.selection_key])
        # Rank 0's callbacks may ask to stop: every process stops after this same epoch.
        stop_reason = distributed.on_main(self.group, lambda: self._end_epoch_on_main(record, improved))
        self.saved_epoch = self.state.epoch  # on every process: rank 0 has written last.pt
        return self._budget_or_pause() if stats.stopped_early else stop_reason

    def _budget_or_pause(self) -> str:
        return PAUSED if self.clock.paused else BUDGET_REACHED

    def _end_epoch_on_main(self, record: dict[str, Any], improved: bool) -> str:
        """Checkpoints, callbacks and the epoch's line; returns why a callback stops the run ("" if none)."""
        self._save_checkpoints(improved)
        self._notify("on_epoch_end", dict(record))
        if not self.values["quiet"]:
            self.echo(_epoch_line(record, self.values["epochs"], improved, self.task.kind))
        if self.context.should_stop:
            return self.context.stop_reason or "stopped by a callback"
        return ""

    def _train_epoch(self, epoch: int) -> EpochStats:
        values = self.values
        self.data.train_set_at(self.clock.progress(self.state.step))
        # Seeding per epoch makes a resumed run repeat the uninterrupted one exactly.
        seed_everything(values["seed"] * 100_003 + epoch)
        loader = self.data.train_loader(values["seed"] * 100_003 + epoch)
        self.clock.start_epoch()
        return train_one_epoch(
            self.step,
            loader,
            before_step=self._before_step,
            accumulate_steps=values["accumulate_steps"],
            progress_label=f"epoch {epoch}/{values['epochs']}",
            quiet=values["quiet"],
        )

    def _before_step(self) -> bool:
        """Whether the next optimizer step may begin (the time budget, agreed by every process);
        sets its learning rate from the progress so far."""
        if distributed.any_across(self.group, not self.clock.next_step_fits()):
            return False
        values = self.values
        progress = self.clock.progress(self.state.step)
        factor = learning_rate_factor(values["scheduler"], progress, values["warmup_fraction"])
        if self.freeze is not None:
            self.freeze.update(progress)
        set_learning_rate(self.optimizer, values["learning_rate"], factor)
        self.state.step += 1
        return True

    def _pool_train_stats(self, stats: EpochStats) -> None:
        if not self.group.enabled:
            return
        loss, dice, count = distributed.sum_across(
            self.group, stats.loss * stats.images, stats.dice * stats.images, stats.images
        )
        stats.loss, stats.dice, stats.images = loss / max(count, 1), dice / max(count, 1), int(count)

    def _epoch_record(
        self, epoch: int, stats: EpochStats, validation: Validation, started: float, train_seconds: float
    ) -> dict[str, Any]:
        """One row of metrics.csv (the column names are part of segkit's interface)."""
        record = {
            "epoch": epoch,
            "train_loss": stats.loss,
            "train_dice": stats.dice,
            "valid_loss": validation.loss,
            **self.task.record_fields(validation.scores),
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_time_s": time.monotonic() - started,
            "train_images_per_s": stats.images / max(train_seconds, 1e-9),
            "skipped_steps": stats.skipped_steps,
            "train_image_size": self.data.train_size,
        }
        if validation.calibrated is not None:
            record["calibrated_threshold"], record["valid_dice_calibrated"] = validation.calibrated
        return record

    def _save_checkpoints(self, improved: bool) -> None:
        payload = checkpoints.checkpoint_payload(self)
        checkpoints.save_last(self.run_dir, payload)
        self.saved_epoch = self.state.epoch
        self._notify("on_checkpoint", self.run_dir / checkpoints.LAST_FILE, False)
        if improved:
            self._notify("on_checkpoint", checkpoints.save_best(self.run_dir, payload), True)

    def _write_run_config(self) -> None:
        """config.json, and plan.json for --recipe auto (rank 0 alone)."""
        callback_objects = self._callback_object_names()
        write_json(
            self.run_dir / CONFIG_FILE,
            {
                "segkit_version": __version__,
                "config": self.values,
                "sources": self.sources,
                "resolved": {
                    "device": str(self.device),
                    "amp": str(self.amp_dtype),
                    "channels_last": self.channels_last,
                    "workers": self.data.workers,
                    "in_channels": self.in_channels,
                    "train_images": len(self.data.train_set),
                    "valid_images": len(self.data.valid_set),
                    "processes": self.group.world_size,
                    "task": self.task.kind,
                },
                "metrics": self.task.record_labels(_validation_resolution(self.values)),
                "callback_objects": callback_objects,
            },
        )
        if self.plan is not None:
            self.plan.write(self.run_dir)
        if self.fold is not None:
            write_json(self.run_dir / FOLD_FILE, self.fold)

    def _callback_object_names(self) -> list[str]:
        """The classes of the callback objects given in Python (``segkit.train(callbacks=[...])``), as
        config.json records them. A resume given none keeps the record and says they do not run now."""
        given = [f"{type(obj).__module__}.{type(obj).__qualname__}" for obj in self.callback_objects]
        if not self.resumed or given:
            return given
        recorded = read_run_config(self.run_dir).get("callback_objects") or []
        if recorded:
            self.echo(
                f"Note: this run was trained with callback objects ({', '.join(recorded)}); none were "
                "given to this resume, so they do not run now (segkit.Run(...).resume(callbacks=[...]) "
                "gives them again)"
            )
        return list(recorded)

    def _notify(self, event: str, *arguments: Any) -> None:
        for callback in self.callbacks:
            handler = getattr(callback, event, None)  # a callback implements any of the events
            if handler is not None:
                handler(self.context, *arguments)


#: The loss a run of each task gets when nobody chose one (the seed report's bce_dice is binary).
TASK_DEFAULT_LOSSES = {"multiclass": "ce_dice"}


def fit_default_loss_to_task(values: dict[str, Any], sources: dict[str, str], task_kind: str) -> str:
    """A loss left at the seed report's default that does not serve ``task_kind`` becomes the task's
    default loss, in ``values`` and ``sources`` (so config.json and --print-config say so); returns the
    line saying it ("" when nothing changed). A loss anyone chose (a flag, a file, a recipe, a plan,
    the dataset) is never replaced: one that does not fit stays a usage error."""
    default = TASK_DEFAULT_LOSSES.get(task_kind)
    if default is None or sources.get("loss") != DEFAULT_SOURCE or values["loss"] == default:
        return ""
    if values["loss_options"]:  # options given for the default loss: it was meant, so say it does not fit
        return ""
    if task_kind in loss_tasks(get_component("loss", values["loss"]).metadata):
        return ""
    left = values["loss"]
    values["loss"] = default
    sources["loss"] = f"default for a {task_kind} task"
    return (
        f"Loss: {default}, the default for a {task_kind} task (the seed report's {left} does not serve "
        "one); --loss chooses another"
    )


def check_loss_task(loss_name: str, task_kind: str) -> None:
    """A loss made for another kind of task is a usage error naming the losses that fit."""

    check_loss_metadata(loss_name, get_component("loss", loss_name).metadata, task_kind)


def _validation_resolution(values: dict[str, Any]) -> str:
    """Where validation figures are computed: the network input size, or native resolution."""
    if values.get("crop_size") is None:
        return f"{values['image_size']}x{values['image_size']} network input"
    scaled = f" scaled x{values['scale']:g}" if values["scale"] != 1 else ""
    tile = values["tile"] or 2 * values["crop_size"]
    return f"native resolution{scaled}, {tile}x{tile} tiles"


def _create_model(name: str, in_channels: int, out_channels: int, values: dict[str, Any]) -> torch.nn.Module:
    try:
        return create_model(
            name, in_channels=in_channels, out_channels=out_channels, **values["model_options"]
        )
    except (MemoryError, RuntimeError) as error:  # e.g. base_channels=99999999: weights beyond any memory
        raise UsageError(
            f"model {name!r} cannot be built with options {values['model_options']}: "
            f"{str(error).splitlines()[0][:200] if str(error) else type(error).__name__}"
        ) from None


def _make_folder(path: Path) -> Path:
    """A new run's given folder (a fold run's), made empty; one that exists is not written over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise UsageError(f"{path} exists already: a new run is not written over another") from None
    return path


def _silent(text: str) -> None:
    """Processes other than rank 0 print nothing."""


def _epoch_line(record: dict[str, Any], epochs: int, improved: bool, task_kind: str = "binary") -> str:
    if task_kind == "binary":
        valid = f"dice {record['valid_dice']:.4f}"
    else:
        valid = f"mean IoU {record['valid_iou']:.4f} mean Dice {record['valid_dice']:.4f}"
    calibrated = (
        f" ({record['valid_dice_calibrated']:.4f} at threshold {record['calibrated_threshold']:g})"
        if "calibrated_threshold" in record
        else ""
    )
    return (
        f"epoch {record['epoch']:>3}/{epochs}"
        f"  train loss {record['train_loss']:.4f} dice {record['train_dice']:.4f}"
        f"  valid loss {record['valid_loss']:.4f} {valid}{calibrated}"
        f"  lr {record['lr']:.2e}  {record['epoch_time_s']:.1f}s"
        f"  {record['train_images_per_s']:.1f} img/s{'  *best' if improved else ''}"
    )


def _longer_budget(budget: float | None) -> str:
    """A --time-budget worth trying after one that trained nothing: twice as long, in minutes."""
    return f"{math.ceil(2 * (budget or 60) / 60)}m"


def _build_callbacks(values: dict[str, Any], run_dir: Path) -> list:
    """The default callbacks, those ``--callback`` adds, less those ``--no-callback`` leaves out."""
    options = values["callback_options"]
    names = enabled_callbacks(values)
    return [create_callback(name, run_dir=run_dir, **options.get(name, {})) for name in names]
