"""``segkit.Run``: a run folder from Python, what ``segkit run`` made (or ``segkit.train``, or
``Run.from_model`` for weights trained elsewhere), with the commands that take a run as methods:
``resume``, ``evaluate``, ``predict``, ``report`` and ``export`` call the functions the CLI calls."""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segkit.config.run_folder import (
    FOLDS_FILE,
    finished_folds,
    fold_folder,
    is_fold_parent,
    read_json_object,
    read_run_config,
)
from segkit.errors import UsageError

if TYPE_CHECKING:
    import torch

    from segkit.inference.predictor import TrainedModel

#: The figure that picks best.pt, by task (``segkit.task``'s ``selection_key``).
_SELECTION_KEYS = {"binary": "valid_dice", "multiclass": "valid_iou", "multilabel": "valid_iou"}


def _table(rows: list[dict[str, Any]]) -> Any:
    """Rows as a pandas DataFrame where pandas is installed, else the rows themselves."""
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def _number(cell: str) -> Any:
    """A metrics.csv cell as the number it holds (int where it is one), blank as NaN, text as text."""
    if not cell.strip():
        return math.nan
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


@dataclass
class EvaluationResult:
    """What ``Run.evaluate`` returns: the pooled figures (and the settings they were made with, as
    ``summary.json`` holds them), one row per image, and the folder they were written to."""

    summary: dict[str, Any]
    #: One row per image (a pandas DataFrame when pandas is installed, else a list of dicts).
    per_image: Any
    folder: Path

    @property
    def scores(self) -> dict[str, Any]:
        """The pooled and per-image-mean figures at the resolution they were scored at (original
        where the dataset can read its masks, else the network's)."""
        return self.summary.get("original_resolution") or self.summary["network_resolution"]


class ReportPage:
    """A written report page; shown inline in Jupyter (the page in a frame of its own)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ReportPage({str(self.path)!r})"

    def _repr_html_(self) -> str:
        page = self.path.read_text(encoding="utf-8")
        return (
            f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:720px;'
            f'border:1px solid #ccc"></iframe><div>{html.escape(str(self.path))}</div>'
        )


class Run:
    """A segkit run folder: ``segkit.Run("runs/20261124-101500-unet-bce_dice")``.

    ``settings`` and ``sources`` are what ``config.json`` records (each value and where it came from),
    ``history`` the rows of ``metrics.csv``, ``best_score``/``best_epoch`` the best validation figure
    (``metric`` says which), ``best_checkpoint``/``last_checkpoint`` the files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise UsageError(f"{self.path} is not a run folder (segkit run makes one)")
        self._read()

    def _read(self) -> None:
        """Read config.json (again, after a resume) and forget the models loaded from the old weights."""
        self._folds: dict[str, Any] | None = None
        if is_fold_parent(self.path):  # a --folds parent: its settings are its folds'
            self._folds = read_json_object(self.path / FOLDS_FILE)
            first = read_run_config(fold_folder(self.path, 0), missing_ok=True)
            self._record = {
                **first,
                "config": self._folds.get("config"),
                "sources": self._folds.get("sources"),
            }
        else:
            self._record = read_run_config(self.path)
        if not isinstance(self._record.get("config"), dict):
            raise UsageError(f"{self.path} is not a segkit run folder: its config.json records no settings")
        self._trained: dict[str, TrainedModel] = {}

    def __repr__(self) -> str:
        best = (
            f", best {self.metric} {self.best_score:.4f} at epoch {self.best_epoch}"
            if self.best_epoch
            else ""
        )
        return f"Run({str(self.path)!r}{best})"

    # -- what the folder records ---------------------------------------------------------------

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._record["config"])

    @property
    def sources(self) -> dict[str, str]:
        return dict(self._record.get("sources") or {})

    @property
    def task(self) -> str:
        return (self._record.get("resolved") or {}).get("task", "binary")

    @property
    def folds(self) -> list[Run]:
        """A ``--folds`` parent's fold runs whose training ended (``[]`` for an ordinary run)."""
        if self._folds is None:
            return []
        return [
            Run(fold_folder(self.path, index))
            for index in finished_folds(self.path, int(self._folds["folds"]))
        ]

    @property
    def out_of_fold(self) -> dict[str, Any] | None:
        """A ``--folds`` parent's per-fold scores, their spread and the choices made on them."""
        return None if self._folds is None else self._folds.get("out_of_fold")

    @property
    def imported(self) -> bool:
        """Whether the weights were trained elsewhere and imported (``Run.from_model``)."""
        return bool(self._record.get("imported"))

    @property
    def history(self) -> list[dict[str, Any]]:
        """One dict per trained epoch, as ``metrics.csv`` holds it (empty before the first epoch, or
        when the csv recorder was left out)."""
        from segkit.reporting.plotting import METRICS_FILE, read_metrics_csv

        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        header, table = read_metrics_csv(path)
        return [dict(zip(header, map(_number, row), strict=True)) for row in table]

    @property
    def metric(self) -> str:
        """The metrics.csv column that picks best.pt: ``valid_dice`` (binary) or ``valid_iou``."""
        return _SELECTION_KEYS.get(self.task, "valid_dice")

    def _best_row(self) -> dict[str, Any] | None:
        rows = [row for row in self.history if isinstance(row.get(self.metric), (int, float))]
        finite = [row for row in rows if not math.isnan(row[self.metric])]
        return max(finite, key=lambda row: row[self.metric], default=None)

    @property
    def best_score(self) -> float | None:
        row = self._best_row()
        return None if row is None else float(row[self.metric])

    @property
    def best_epoch(self) -> int | None:
        row = self._best_row()
        return None if row is None else int(row["epoch"])

    @property
    def best_checkpoint(self) -> Path | None:
        path = self.path / "best.pt"
        return path if path.is_file() else None

    @property
    def last_checkpoint(self) -> Path | None:
        path = self.path / "last.pt"
        return path if path.is_file() else None

    # -- what can be done with it --------------------------------------------------------------

    def model(self, device: str = "cpu") -> TrainedModel:
        """The trained model (best.pt, else last.pt), as ``segkit.load_model`` loads it."""
        if device not in self._trained:
            from segkit.execution.device import resolve_device
            from segkit.inference.predictor import load_trained_model

            self._trained[device] = load_trained_model(self.path, device=resolve_device(device))
        return self._trained[device]

    def resume(
        self, epochs: int | None = None, time_budget: Any = None, callbacks: Any = (), **settings: Any
    ) -> Run:
        """Train further from last.pt, as ``segkit run --resume`` does (only the settings a resume may
        change may be given: epochs, time_budget, data_path, device, workers, the callbacks, quiet).
        Callback objects given to ``segkit.train`` are not remembered: give them again here."""
        from segkit.api.training import resume_run

        if self.imported:
            raise UsageError(
                f"{self.path} holds imported weights (Run.from_model) with no optimizer state to resume: "
                "train a new run with segkit.train(..., init_from=...) instead"
            )
        resume_run(self.path, {"epochs": epochs, "time_budget": time_budget, **settings}, callbacks)
        self._read()
        return self

    def evaluate(self, split: str = "valid", device: str = "cpu", **choices: Any) -> EvaluationResult:
        """Scores on ``split`` as ``segkit evaluate RUN --split SPLIT`` makes them (and writes them, to
        ``RUN/eval-SPLIT``): keyword arguments are its options by their Python names (threshold, tta,
        fill_holes, keep_largest, tile, no_tile, overlap, blend, resolution, boundary, batch_size,
        dataset, data_path, dataset_options, out, quiet)."""
        from segkit.reporting.run_evaluation import evaluate_run

        evaluation = evaluate_run(self.model(device), split=split, **choices)
        return EvaluationResult(evaluation.summary, _table(evaluation.rows), evaluation.out)

    def predict(self, images: Any, tta: bool | None = None, threshold: float | None = None) -> Any:
        """Masks at each photo's own size, as ``TrainedModel.predict`` makes them (see its help):
        a path, a PIL image or a numpy array gives a mask; a list, a list; a folder, ``{path: mask}``."""
        trained = self.model()
        if threshold is not None:
            from dataclasses import replace

            if not 0 < threshold < 1:
                raise UsageError(f"threshold must lie strictly between 0 and 1, got {threshold}")
            trained = replace(trained, threshold=threshold, task=trained.task.with_threshold(threshold))
        return trained.predict(images, tta=tta)

    def report(
        self, split: str = "valid", out: str | os.PathLike | None = None, **options: Any
    ) -> ReportPage:
        """Write the run's page (``segkit report``; default ``RUN/report.html``) and return it: in
        Jupyter it shows inline. Options: worst, best, data_path, batch_size, device, quiet."""
        from segkit.reporting.run_report import write_run_report

        written = write_run_report(self.path, split=split, out=None if out is None else Path(out), **options)
        return ReportPage(written.path)

    def export(
        self,
        path: str | os.PathLike | None = None,
        format: str | None = None,
        check: bool = True,
        opset: int | None = None,
    ) -> Path:
        """Export the model as ``segkit export`` does (ONNX for .onnx, TorchScript for .pt), checked
        against PyTorch; returns the file written (its notes are beside it)."""
        from segkit.inference.export import DEFAULT_OPSET, export_model, format_for_output

        out = None if path is None else str(path)
        export_format = format_for_output(out, format)
        return export_model(self.path, out, export_format, opset or DEFAULT_OPSET, check).path

    # -- weights trained elsewhere ---------------------------------------------------------------

    @classmethod
    def from_model(cls, model: torch.nn.Module | dict[str, Any], *, model_name: str, **settings: Any) -> Run:
        """A run folder for weights trained outside segkit (a hand-written loop over
        ``segkit.create_model``), so that evaluate, predict, report and export work on them.

        ``model``: the ``nn.Module`` or its ``state_dict``; ``model_name``: the registered model it was
        made with (``create_model(model_name, ...)``); ``settings``: what it was trained with, as
        ``segkit.train`` takes them (dataset, data_path, image_size, model_options, threshold, ...).
        The checkpoint says it was imported, epoch 0 with no training history."""
        from segkit.api.imported import write_imported_run

        return cls(write_imported_run(model, model_name, settings))
