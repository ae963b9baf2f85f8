"""Callback "tensorboard": follow a run live in TensorBoard (``pip install 'segkit[tensorboard]'``).

Writes TensorBoard event files into ``<run folder>/tensorboard`` (option ``log_dir``), step = epoch:

- every figure of the epoch record as a scalar, named for its split, metric, reduction and mask rule
  (``valid/dice_per_image_t0.5``, ``train/loss``, ``optim/learning_rate``,
  ``speed/train_images_per_s``; see ``segkit_builtin.tracking.metric_name``), and a text ``metrics``
  with each name's full description;
- the resolved settings, each with where it came from, as text ``settings``;
- every ``image_every`` epochs (and at the first and last), ``images`` validation images as
  photo | truth | prediction | errors pictures (``valid/images/<name>``), predicted by that
  epoch's ``last.pt``.

``segkit run --resume`` continues in the same log dir (recorded in ``trackers.json``); epochs trained
again after an interruption replace the earlier ones (TensorBoard's ``purge_step``). Added on a
``--resume``, it first logs the scalars of the epochs already trained. Under torchrun only
rank 0 writes (the engine builds callbacks on rank 0 only). Open with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import segkit
from segkit.callbacks import Callback, RunContext
from segkit.component_options import Option, Parser, non_negative_int, parse_component_options, path
from segkit_builtin.tracking import (
    TrackerWarning,
    WarnOnce,
    first_epoch_of_session,
    metric_descriptions,
    numeric_metrics,
    read_trackers,
    record_tracker,
    require,
    run_description,
    settings_table,
    task_kind,
)

NAME = "tensorboard"
DEFAULT_LOG_DIR = "tensorboard"


class TensorBoardTracker(Callback):
    def __init__(self, run_dir: Path, log_dir: Path | None, images: int, image_every: int) -> None:
        require("tensorboard", NAME, "tensorboard")
        self.run_dir = Path(run_dir)
        self.log_dir = log_dir
        self.images = images
        self.image_every = image_every
        self.writer: Any = None
        self._described = False
        self._warn = WarnOnce(f"segkit {NAME}", TrackerWarning)

    def on_fit_start(self, context: RunContext) -> None:
        from torch.utils.tensorboard import SummaryWriter

        recorded = read_trackers(self.run_dir).get(NAME, {})
        resumed = bool(recorded.get("log_dir")) or bool(context.history)
        if resumed and self.log_dir is None and recorded.get("log_dir"):
            log_dir = Path(recorded["log_dir"])
        else:
            log_dir = Path(self.log_dir) if self.log_dir is not None else self.run_dir / DEFAULT_LOG_DIR
        first = first_epoch_of_session(context.history)
        # purge_step: events at or after this epoch, left by an interrupted session, are dropped.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=first if resumed else None)
        record_tracker(self.run_dir, NAME, {"log_dir": str(log_dir.resolve())})
        self.description = run_description(self.run_dir)
        rows = settings_table(self.description, context.config)
        table = "| setting | value | source |\n|---|---|---|\n" + "\n".join(
            f"| {key} | {value} | {source} |" for key, value, source in rows
        )
        title = f"resumed at epoch {first}\n\n" if resumed else ""
        self.writer.add_text("settings", title + table, global_step=first)
        if not recorded:  # added on a --resume: the epochs already trained come first
            for record in context.history:
                self._log_scalars(context, record)
            self.writer.flush()

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        if self.writer is None:
            return
        epoch = self._log_scalars(context, metrics)
        if not self._described:
            self._described = True
            descriptions = metric_descriptions(metrics, self.description)
            text = "| name | what it is |\n|---|---|\n" + "\n".join(
                f"| {name} | {words} |" for name, words in descriptions.items()
            )
            self.writer.add_text("metrics", text, global_step=epoch)
        if self._pictures_due(epoch, int(context.config.get("epochs", epoch))):
            self._log_pictures(epoch)
        self.writer.flush()

    def _log_scalars(self, context: RunContext, metrics: dict[str, Any]) -> int:
        epoch = int(metrics.get("epoch", context.epoch))
        kind, threshold = task_kind(self.description), context.config.get("threshold")
        for name, value in numeric_metrics(metrics, kind, threshold).items():
            self.writer.add_scalar(name, value, global_step=epoch)
        return epoch

    def _pictures_due(self, epoch: int, epochs: int) -> bool:
        if self.images == 0 or self.image_every == 0:
            return False
        return epoch == 1 or epoch % self.image_every == 0 or epoch == epochs

    def _log_pictures(self, epoch: int) -> None:
        try:
            for name, picture in validation_pictures(self.run_dir, self.images):
                self.writer.add_image(f"valid/images/{name}", picture, global_step=epoch, dataformats="HWC")
        except Exception as error:  # noqa: BLE001 - pictures are a view; they must never stop training
            self._warn("draw validation pictures", error)

    def on_fit_end(self, context: RunContext) -> None:
        self._close()

    def on_exception(self, context: RunContext, error: BaseException) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def validation_pictures(run_dir: Path, count: int) -> list[tuple[str, Any]]:
    """(name, HWC uint8 array) of the first ``count`` validation images: photo | truth | prediction
    (| errors), the prediction by the run's ``last.pt`` as ``segkit evaluate`` would make it."""
    import numpy as np

    from segkit.data.splits import evaluation_split
    from segkit.inference.predictor import load_trained_model
    from segkit.reporting.report import pictures_of_item, side_by_side

    trained = load_trained_model(Path(run_dir) / "last.pt", device="cpu")
    _, dataset = evaluation_split(trained, "valid", None, None, ())
    pictures = []
    for index in range(min(count, len(dataset))):
        item = dataset[index]
        row = side_by_side(pictures_of_item(trained, item, tta=trained.tta, postprocess=trained.postprocess))
        pictures.append((str(item["name"]), np.asarray(row)))
    return pictures


def _log_dir(value: Any) -> Path | None:
    return None if value is None else path(value)


OPTIONS = {
    "log_dir": Option(
        None,
        Parser(_log_dir, "a folder"),
        help=f"where the event files go (default: <run folder>/{DEFAULT_LOG_DIR}; a resumed run keeps "
        "its own)",
    ),
    "images": Option(4, non_negative_int, help="validation images drawn each time (0: none)"),
    "image_every": Option(5, non_negative_int, help="draw them every N epochs, and at the first and last"),
}


def build_tensorboard(run_dir: Path, **options: Any) -> TensorBoardTracker:
    """Log scalars, validation pictures and settings for TensorBoard."""
    parsed = parse_component_options("callback", NAME, options, OPTIONS)
    return TensorBoardTracker(Path(run_dir), parsed["log_dir"], parsed["images"], parsed["image_every"])


@segkit.hookimpl
def register_callbacks(register):
    register(
        NAME,
        build_tensorboard,
        description="Log per-epoch scalars, validation pictures and settings to TensorBoard "
        "(<run>/tensorboard; pip install 'segkit[tensorboard]')",
        default=False,
        options=OPTIONS,
    )
