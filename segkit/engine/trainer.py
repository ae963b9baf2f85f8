"""``fit``: the training run behind ``segkit run``: data, model, loop, checkpoints, callbacks."""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset

import segkit
from segkit.calibration import ThresholdSweep
from segkit.callbacks import RunContext
from segkit.checkpoint import load_checkpoint, save_checkpoint
from segkit.config import ResolvedConfig
from segkit.engine import distributed
from segkit.engine.device import resolve_amp, resolve_device
from segkit.engine.loop import evaluate_loader, train_one_epoch
from segkit.engine.rundir import CONFIG_FILE, create_run_dir, write_json
from segkit.engine.schedule import (
    build_optimizer,
    learning_rate_factor,
    set_learning_rate,
    train_image_size,
)
from segkit.engine.weight_average import WeightAverage
from segkit.errors import CheckpointError, DataError, SegkitError, UsageError
from segkit.inference import load_state
from segkit.metrics import describe_metric
from segkit.speed import prepare_for_inference, resolve_channels_last

Echo = Callable[[str], None]

# What only --resume needs: last.pt carries it, best.pt (for predict, evaluate, export) does not, which
# keeps best.pt at a third of last.pt's size for Adam (no moment estimates).
RESUME_ONLY_FIELDS = ("optimizer_state", "scaler_state", "rng_state", "raw_model_state", "ema_state")


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


def build_split(config: ResolvedConfig, split: str, image_size: int):
    """One split at ``image_size``: train with the chosen augmentation, the others with none."""
    name = config["dataset"]
    options = {"image_size": image_size, **config["dataset_options"]}
    if config["data_path"] is not None:
        options["root"] = config["data_path"]
    augment = options.pop("augment", config["augment"])
    dataset = segkit.create_dataset(
        name, split=split, augment=augment if split == "train" else "none", **options
    )
    if len(dataset) == 0:
        raise DataError(f"the {split} split of dataset {name!r} is empty")
    return dataset


def build_datasets(config: ResolvedConfig):
    """The train split with the chosen augmentation, and the valid split with none."""
    first_size = train_image_size(config["progressive_sizes"], config["image_size"], 0.0)
    return build_split(config, "train", first_size), build_split(config, "valid", config["image_size"])


def resolve_workers(requested: Any, dataset: Any, device: torch.device) -> int:
    if requested != "auto":
        return int(requested)
    if getattr(dataset, "in_memory", False):
        return 0  # generated or cached in memory: worker processes would only add start-up and copies
    cores = os.cpu_count() or 1
    return min(4, max(1, cores - 1)) if device.type == "cpu" else min(8, cores)


def make_loader(
    dataset,
    batch_size: int,
    shuffle: bool,
    workers: int,
    device: torch.device,
    seed: int,
    group: distributed.ProcessGroup = distributed.ProcessGroup(),
):
    """Training loaders shuffle with a per-epoch seed; under torchrun each process takes its shard."""
    generator = torch.Generator().manual_seed(seed)
    sampler: DistributedSampler[Any] | None = None
    if group.enabled:
        batch_size = max(1, batch_size // group.world_size)  # --batch-size stays the global batch
        if shuffle:
            sampler = DistributedSampler(
                dataset, group.world_size, group.rank, shuffle=True, seed=seed, drop_last=True
            )
        else:
            dataset = Subset(dataset, distributed.shard_indices(len(dataset), group))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=shuffle and len(dataset) > batch_size,
        persistent_workers=False,
        generator=generator,
    )


def _rng_state() -> dict[str, Any]:
    # legacy=True (the default) gives the global MT19937 state as a tuple, never the dict form
    numpy_state = cast("tuple[Any, ...]", np.random.get_state())
    return {
        "python": random.getstate(),
        "numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }


def _restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state[0], numpy_state[1].numpy(), *numpy_state[2:]))
    torch.set_rng_state(state["torch"])


def _finite_parameters(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(parameter).all() for parameter in model.parameters())


def fit(config: ResolvedConfig, echo: Echo = print, resume_dir: Path | None = None) -> RunResult:
    """Train according to ``config``; with ``resume_dir``, continue that run from its ``last.pt``."""
    # Paths become strings, so checkpoints hold only what torch.load(weights_only=True) accepts.
    values = json.loads(json.dumps(config.values, default=str))
    device = resolve_device(values["device"])
    amp_dtype = resolve_amp(values["amp"], device)
    channels_last = resolve_channels_last(values["channels_last"], device, training=True)
    group = distributed.setup(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if group.enabled:
            device = torch.device("cuda", group.local_rank)
    if not group.is_main:
        echo = _silent
        values = {**values, "quiet": True}
    seed_everything(values["seed"])

    train_set, valid_set = build_datasets(config)
    workers = resolve_workers(values["workers"], train_set, device)
    in_channels = int(train_set[0]["image"].shape[0])
    model_name = values["model"]
    try:
        model = segkit.create_model(
            model_name, in_channels=in_channels, out_channels=1, **values["model_options"]
        )
    except (MemoryError, RuntimeError) as error:  # e.g. base_channels=99999999: weights beyond any memory
        raise UsageError(
            f"model {model_name!r} cannot be built with options {values['model_options']}: "
            f"{str(error).splitlines()[0][:200] if str(error) else type(error).__name__}"
        ) from None
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    train_model = DistributedDataParallel(model) if group.enabled else model
    loss_fn = segkit.create_loss(values["loss"], **values["loss_options"])
    optimizer = build_optimizer(
        values["optimizer"], model.parameters(), values["learning_rate"], values["weight_decay"]
    )
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    # With ema_decay, validation, best.pt and prediction use the weight average; training the model.
    weight_average = WeightAverage(model, values["ema_decay"]) if values["ema_decay"] else None
    evaluated = weight_average.averaged if weight_average is not None else model

    start_epoch, step, elapsed_before = 1, 0, 0.0
    history: list[dict[str, Any]] = []
    best_dice, best_epoch = -1.0, 0
    if resume_dir is not None:
        run_dir = Path(resume_dir)
        state = load_checkpoint(run_dir / "last.pt")
        trained_state = state.get("raw_model_state") or state["model_state"]
        load_state(model, trained_state, run_dir / "last.pt", model_name)  # one line on a mismatch
        try:
            if weight_average is not None:
                weight_average.load_state_dict(state["ema_state"], state["model_state"])
            optimizer.load_state_dict(state["optimizer_state"])
            if scaler is not None and state.get("scaler_state"):
                scaler.load_state_dict(state["scaler_state"])
            start_epoch = state["epoch"] + 1
            step = state["schedule_state"]["step"]
            elapsed_before = state["schedule_state"]["elapsed_s"]
            history = list(state.get("history", []))
            best_dice, best_epoch = state.get("best_dice", -1.0), state.get("best_epoch", 0)
            _restore_rng(state["rng_state"])
        except KeyError as error:
            raise CheckpointError(f"{run_dir / 'last.pt'} cannot be resumed from: it lacks {error}") from None
        except (ValueError, TypeError, IndexError, RuntimeError) as error:
            raise CheckpointError(
                f"{run_dir / 'last.pt'} cannot be resumed from: {type(error).__name__}: {str(error)[:200]}"
            ) from None
        echo(f"Resuming {run_dir} at epoch {start_epoch} of {values['epochs']}")
    else:
        created = create_run_dir(Path(values["out"]), model_name, values["loss"]) if group.is_main else None
        run_dir = distributed.broadcast(group, created)

    callbacks = _build_callbacks(values, run_dir) if group.is_main else []
    metric_text = describe_metric(
        "dice",
        "per_image",
        values["threshold"],
        f"{values['image_size']}x{values['image_size']} network input",
        "valid",
    )
    if group.is_main:
        write_json(
            run_dir / CONFIG_FILE,
            {
                "segkit_version": segkit.__version__,
                "config": values,
                "sources": config.sources,
                "resolved": {
                    "device": str(device),
                    "amp": str(amp_dtype),
                    "channels_last": channels_last,
                    "workers": workers,
                    "in_channels": in_channels,
                    "train_images": len(train_set),
                    "valid_images": len(valid_set),
                    "processes": group.world_size,
                },
                "metrics": {"valid_dice": metric_text},
            },
        )
    echo(f"Device {device}, {workers} loader workers, {len(train_set)} train / {len(valid_set)} valid images")
    echo(f"Run folder: {run_dir}")

    context = RunContext(run_dir=run_dir, config=values, model_name=model_name, history=history)
    valid_loader = make_loader(valid_set, values["batch_size"], False, workers, device, values["seed"], group)
    epochs, budget = values["epochs"], values["time_budget"]
    steps_per_epoch = max(1, len(train_set) // values["batch_size"])
    total_steps = steps_per_epoch * epochs
    started = time.monotonic()
    validation_seconds = 0.0
    # The time between the starts of the last two steps (data wait included): a step is only begun
    # when it, and the validation after it, should still end within the budget.
    step_seconds = 0.0
    last_step_started: float | None = None

    def elapsed() -> float:
        return elapsed_before + time.monotonic() - started

    def progress() -> float:
        by_steps = step / total_steps
        return max(by_steps, elapsed() / budget) if budget else by_steps

    def before_step() -> bool:
        nonlocal step, step_seconds, last_step_started
        now = time.monotonic()
        if last_step_started is not None:
            step_seconds = now - last_step_started
        last_step_started = now
        over = bool(budget) and elapsed() + step_seconds + validation_seconds > budget
        if distributed.any_across(group, over):
            return False
        set_learning_rate(
            optimizer,
            values["learning_rate"],
            learning_rate_factor(values["scheduler"], progress(), values["warmup_fraction"]),
        )
        step += 1
        return True

    def checkpoint_payload(epoch: int) -> dict[str, Any]:
        last = history[-1] if history else {}
        payload = {
            "segkit_version": segkit.__version__,
            "model_name": model_name,
            "model_options": values["model_options"],
            "in_channels": in_channels,
            "out_channels": 1,
            "image_size": values["image_size"],
            "normalization": getattr(train_set, "normalization", None),
            # The validation-calibrated threshold when the recipe asks for one; predict/evaluate use it.
            "threshold": last.get("calibrated_threshold", values["threshold"]),
            "inference": {key: values[key] for key in ("tta", "fill_holes", "keep_largest")},
            "dataset": values["dataset"],
            "epoch": epoch,
            "metrics": last,
            "history": history,
            "best_dice": best_dice,
            "best_epoch": best_epoch,
            "model_state": _cpu_state(evaluated),
            "optimizer_state": optimizer.state_dict(),
            "schedule_state": {"step": step, "elapsed_s": elapsed()},
            "scaler_state": scaler.state_dict() if scaler is not None else {},
            "rng_state": _rng_state(),
            "config": values,
        }
        if weight_average is not None:  # the trained weights too, which --resume continues from
            payload["raw_model_state"] = _cpu_state(model)
            payload["ema_state"] = weight_average.state_dict()
        return payload

    if group.is_main and resume_dir is None:
        save_checkpoint(run_dir / "last.pt", checkpoint_payload(0))
    for callback in callbacks:
        callback.on_fit_start(context)
    stop_reason = ""
    epoch = start_epoch - 1
    saved_epoch = start_epoch - 1  # the epoch last.pt holds; a Ctrl-C during its write leaves the one before
    train_size = train_image_size(values["progressive_sizes"], values["image_size"], progress())
    if train_size != train_image_size(values["progressive_sizes"], values["image_size"], 0.0):
        train_set = build_split(config, "train", train_size)  # resuming in a later resizing stage
    try:
        for epoch in range(start_epoch, epochs + 1):
            context.epoch = epoch
            size_now = train_image_size(values["progressive_sizes"], values["image_size"], progress())
            if size_now != train_size:  # progressive resizing: the next stage starts with this epoch
                train_size, train_set = size_now, build_split(config, "train", size_now)
            # Seeding per epoch makes a resumed run repeat the uninterrupted one exactly.
            seed_everything(values["seed"] * 100_003 + epoch)
            train_loader = make_loader(
                train_set,
                values["batch_size"],
                True,
                workers,
                device,
                values["seed"] * 100_003 + epoch,
                group,
            )
            epoch_started = time.monotonic()
            last_step_started = None  # the gap across validation and checkpoints is no step's time
            stats = train_one_epoch(
                train_model,
                train_loader,
                loss_fn,
                optimizer,
                device=device,
                amp_dtype=amp_dtype,
                scaler=scaler,
                channels_last=channels_last,
                threshold=values["threshold"],
                on_nan=values["on_nan"],
                before_step=before_step,
                after_step=None if weight_average is None else lambda: weight_average.update(model),
                progress_label=f"epoch {epoch}/{epochs}",
                quiet=values["quiet"],
            )
            train_seconds = time.monotonic() - epoch_started
            if stats.steps == 0 and stats.stopped_early:
                stop_reason = "time budget reached"
                epoch -= 1
                break
            # Checked before validation, whose metrics would otherwise fail on NaN logits less clearly.
            if not _finite_parameters(model):
                raise SegkitError(
                    f"model weights became non-finite in epoch {epoch}; best.pt is left as it was"
                )
            valid_started = time.monotonic()
            sweep = ThresholdSweep() if values["calibrate_threshold"] else None
            # Validation runs the inference fast path (BatchNorm folded, channels_last on the CPU), on a
            # fresh copy of this epoch's weights; the results equal the plain path's within float error.
            valid_model = prepare_for_inference(
                evaluated, device, channels_last=values["channels_last"], threads=0
            )
            valid_loss, accumulator = evaluate_loader(
                valid_model,
                valid_loader,
                loss_fn,
                device=device,
                amp_dtype=amp_dtype,
                channels_last=resolve_channels_last(values["channels_last"], device, training=False),
                threshold=values["threshold"],
                tta=values["tta"],
                sweep=sweep,
            )
            if group.enabled:  # pool the shards: counts, losses and image numbers of every process
                loss_total, valid_count = distributed.sum_across(
                    group, valid_loss * len(accumulator), len(accumulator)
                )
                valid_loss = loss_total / max(valid_count, 1)
                accumulator.all_reduce()
                if sweep is not None:
                    sweep.all_reduce()
                train_loss, train_dice, train_count = distributed.sum_across(
                    group, stats.loss * stats.images, stats.dice * stats.images, stats.images
                )
                stats.loss, stats.dice = train_loss / max(train_count, 1), train_dice / max(train_count, 1)
                stats.images = int(train_count)
            validation_seconds = time.monotonic() - valid_started
            scores = accumulator.compute()
            record = {
                "epoch": epoch,
                "train_loss": stats.loss,
                "train_dice": stats.dice,
                "valid_loss": valid_loss,
                "valid_dice": scores["dice_per_image"],
                "valid_dice_dataset": scores["dice_dataset"],
                "valid_iou": scores["iou_per_image"],
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": time.monotonic() - epoch_started,
                "train_images_per_s": stats.images / max(train_seconds, 1e-9),
                "skipped_steps": stats.skipped_steps,
                "train_image_size": train_size,
            }
            if sweep is not None:
                record["calibrated_threshold"], record["valid_dice_calibrated"] = sweep.best(
                    values["threshold"]
                )
            history.append(record)
            improved = record["valid_dice"] > best_dice and math.isfinite(record["valid_dice"])
            if improved:
                best_dice, best_epoch = record["valid_dice"], epoch
            if group.is_main:
                save_checkpoint(run_dir / "last.pt", checkpoint_payload(epoch))
                saved_epoch = epoch
            for callback in callbacks:
                callback.on_checkpoint(context, run_dir / "last.pt", False)
            if improved and group.is_main:
                best = {k: v for k, v in checkpoint_payload(epoch).items() if k not in RESUME_ONLY_FIELDS}
                save_checkpoint(run_dir / "best.pt", best)
                for callback in callbacks:
                    callback.on_checkpoint(context, run_dir / "best.pt", True)
            for callback in callbacks:
                callback.on_epoch_end(context, dict(record))
            if not values["quiet"]:
                echo(_epoch_line(record, epochs, improved))
            if stats.stopped_early:
                stop_reason = "time budget reached"
                break
            if context.should_stop:
                stop_reason = context.stop_reason or "stopped by a callback"
                break
    except KeyboardInterrupt:
        # last.pt always holds the last completed epoch (epoch 0: the initial weights), so --resume
        # repeats the unfinished epoch exactly as an uninterrupted run would.
        echo(
            f"Interrupted: {run_dir / 'last.pt'} holds epoch {saved_epoch}; "
            f"continue with: segkit run --resume {run_dir}"
        )
        for callback in callbacks:
            callback.on_fit_end(context)
        raise
    except BaseException as error:
        for callback in callbacks:
            callback.on_exception(context, error)
        raise
    for callback in callbacks:
        callback.on_fit_end(context)
    distributed.teardown(group)
    return RunResult(run_dir, best_dice, best_epoch, history, stop_reason, metric_text)


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


def _silent(text: str) -> None:
    """Processes other than rank 0 print nothing."""


def _epoch_line(record: dict[str, Any], epochs: int, improved: bool) -> str:
    return (
        f"epoch {record['epoch']:>3}/{epochs}"
        f"  train loss {record['train_loss']:.4f} dice {record['train_dice']:.4f}"
        f"  valid loss {record['valid_loss']:.4f} dice {record['valid_dice']:.4f}"
        + (
            f" ({record['valid_dice_calibrated']:.4f} at threshold {record['calibrated_threshold']:g})"
            if "calibrated_threshold" in record
            else ""
        )
        + f"  lr {record['lr']:.2e}  {record['epoch_time_s']:.1f}s"
        f"  {record['train_images_per_s']:.1f} img/s{'  *best' if improved else ''}"
    )


def _build_callbacks(values: dict[str, Any], run_dir: Path) -> list:
    names = values["callbacks"]
    if names is None:
        names = [c.name for c in segkit.list_components("callback") if c.metadata.get("default")]
    options = values["callback_options"]
    unknown = set(options) - set(names)
    if unknown:
        raise UsageError(
            f"--callback-option given for callbacks that are not enabled: {', '.join(sorted(unknown))}"
        )
    return [segkit.create_callback(name, run_dir=run_dir, **options.get(name, {})) for name in names]
