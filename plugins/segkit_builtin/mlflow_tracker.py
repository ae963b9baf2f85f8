"""Callback "mlflow": find a run afterwards in MLflow (``pip install 'segkit[mlflow]'``).

- **Where**: by default a local store beside the run folders, in one folder ``<out>/mlflow`` shared by
  every run of the same ``--out`` so that MLflow compares them: ``<out>/mlflow/mlflow.db`` (SQLite,
  MLflow's own default kind of store) and the artifacts under ``<out>/mlflow/artifacts``; nothing
  leaves the machine. Option ``tracking_uri`` names any other store (``http://mlflow.example:5000``,
  ``sqlite:///...``). Look with ``mlflow ui --backend-store-uri sqlite:///runs/mlflow/mlflow.db``
  (the full ``mlflow`` package).
- **What**: parameters from the resolved settings (nested options flattened:
  ``model_options.base_channels``), a tag per setting saying where it came from
  (``segkit.source.<setting>``), every figure of each epoch as a metric at step = epoch (named as
  in ``segkit_builtin.tracking.metric_name``), and, when the run ends (finished, stopped, interrupted
  or failed), ``best.pt``, ``config.json``, ``metrics.csv``, the curves (``curves/*.png``) and
  ``metric_descriptions.json`` as artifacts.
- ``segkit run --resume`` continues the same MLflow run (its id is in ``trackers.json``); a setting
  the resume changed (``epochs``) is noted as a tag ``segkit.resumed.<setting>``, since MLflow
  parameters cannot change. Added on a ``--resume``, it starts an MLflow run holding the epochs
  already trained. Under torchrun only rank 0 logs.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import segkit
from segkit.callbacks import Callback, RunContext
from segkit.component_options import Option, optional, parse_component_options, text
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
    task_kind,
)

NAME = "mlflow"
STORE_FOLDER = "mlflow"
STORE_FILE = "mlflow.db"
ARTIFACTS_FOLDER = "artifacts"
#: MLflow's limit on a parameter's value.
_PARAM_LENGTH = 6000


def default_store(run_dir: Path) -> Path:
    """The folder of the default local store: beside the run folder, shared by its siblings."""
    return (Path(run_dir).parent / STORE_FOLDER).resolve()


def default_tracking_uri(run_dir: Path) -> str:
    return "sqlite:///" + str(default_store(run_dir) / STORE_FILE)


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Settings as MLflow parameters: nested dicts as ``outer.inner``, lists as text."""
    flat: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return {key: value[:_PARAM_LENGTH] for key, value in flat.items()}


class MlflowTracker(Callback):
    def __init__(
        self, run_dir: Path, tracking_uri: str | None, experiment: str, run_name: str | None
    ) -> None:
        require("mlflow", NAME, "mlflow")
        self.run_dir = Path(run_dir)
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.run_name = run_name
        self.client: Any = None
        self.run_id: str | None = None
        self._described = False
        self._warn = WarnOnce(f"segkit {NAME}", TrackerWarning)

    def on_fit_start(self, context: RunContext) -> None:
        from mlflow.tracking import MlflowClient

        recorded = read_trackers(self.run_dir).get(NAME, {})
        # trackers.json is this run folder's own: a run id there is this run's, from an earlier session.
        resumed = bool(recorded.get("run_id"))
        uri = self.tracking_uri or (recorded.get("tracking_uri") if resumed else None)
        if uri is None:
            uri = default_tracking_uri(self.run_dir)
            default_store(self.run_dir).mkdir(exist_ok=True)
        with _quiet_store_setup():
            self.client = MlflowClient(tracking_uri=uri)
            if resumed and self.tracking_uri in (None, recorded.get("tracking_uri")):
                self.run_id = str(recorded["run_id"])
                self.client.update_run(self.run_id, status="RUNNING")
                self._note_resume(context)
            else:
                self.run_id = self._start_run(uri, context)
                for record in context.history:  # added on a --resume: the epochs already trained
                    self._log_metrics(context, record)
        record_tracker(
            self.run_dir,
            NAME,
            {"tracking_uri": uri, "run_id": self.run_id, "experiment": self.experiment},
        )

    def _start_run(self, uri: str, context: RunContext) -> str:
        from mlflow.entities import Param, RunTag

        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            location = None
            if uri == default_tracking_uri(self.run_dir):
                location = (default_store(self.run_dir) / ARTIFACTS_FOLDER).as_uri()
            experiment_id = self.client.create_experiment(self.experiment, artifact_location=location)
        description = run_description(self.run_dir)
        sources = description.get("sources") if isinstance(description.get("sources"), dict) else {}
        tags = {
            "mlflow.runName": self.run_name or self.run_dir.name,
            "segkit.run_dir": str(self.run_dir.resolve()),
            "segkit.task": task_kind(description),
            **{f"segkit.source.{key}": str(source) for key, source in (sources or {}).items()},
        }
        run = self.client.create_run(experiment_id, tags=tags)
        params = [Param(key, value) for key, value in flatten(context.config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(run.info.run_id, params=params[start : start + 100])
        self.client.log_batch(run.info.run_id, tags=[RunTag("segkit.version", segkit.__version__)])
        return str(run.info.run_id)

    def _note_resume(self, context: RunContext) -> None:
        logged = self.client.get_run(self.run_id).data.params
        first = first_epoch_of_session(context.history)
        self.client.set_tag(self.run_id, "segkit.resumed_at_epoch", str(first))
        for key, value in flatten(context.config).items():
            if key not in logged:
                self.client.log_param(self.run_id, key, value)
            elif logged[key] != value:
                self.client.set_tag(self.run_id, f"segkit.resumed.{key}", value)

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            self._log_metrics(context, metrics)
            if not self._described:
                self._described = True
                descriptions = metric_descriptions(metrics, run_description(self.run_dir))
                self.client.log_dict(self.run_id, descriptions, "metric_descriptions.json")
        except Exception as error:  # noqa: BLE001 - a busy store must not stop training
            self._warn("log this epoch's metrics", error)

    def _log_metrics(self, context: RunContext, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        epoch = int(metrics.get("epoch", context.epoch))
        kind = task_kind(run_description(self.run_dir))
        now = int(time.time() * 1000)
        logged = [
            Metric(name, value, now, epoch)
            for name, value in numeric_metrics(metrics, kind, context.config.get("threshold")).items()
            if not math.isnan(value)
        ]
        self.client.log_batch(self.run_id, metrics=logged)

    def on_fit_end(self, context: RunContext) -> None:
        self._finish("FINISHED")

    def on_exception(self, context: RunContext, error: BaseException) -> None:
        self._finish("FAILED")

    def _finish(self, status: str) -> None:
        if self.client is None or self.run_id is None:
            return
        try:
            for name in ("best.pt", "config.json", "metrics.csv", "trackers.json"):
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
            self._log_curves()
        except Exception as error:  # noqa: BLE001
            self._warn("store the artifacts", error)
        finally:
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception as error:  # noqa: BLE001
                self._warn("mark the run as ended", error)
            self.client = None

    def _log_curves(self) -> None:
        from segkit.reporting.plotting import plot_runs, read_run

        if not (self.run_dir / "metrics.csv").is_file():
            return
        with tempfile.TemporaryDirectory() as folder:
            plot_runs([read_run(self.run_dir)], Path(folder))
            self.client.log_artifacts(self.run_id, folder, artifact_path="curves")


@contextmanager
def _quiet_store_setup() -> Iterator[None]:
    """Creating a SQLite store runs its schema migrations, which log a dozen INFO lines (and SQLAlchemy
    warns about MLflow's own code): keep the run's output to its own lines."""
    loggers = [logging.getLogger(name) for name in ("alembic", "mlflow.store")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


OPTIONS = {
    "tracking_uri": Option(
        None,
        optional(text),
        help=f"the MLflow store (default: sqlite:///<out>/{STORE_FOLDER}/{STORE_FILE}, beside the run "
        "folders; a resumed run keeps its own)",
    ),
    "experiment": Option("segkit", text, help="the MLflow experiment the run goes into"),
    "run_name": Option(None, optional(text), help="the MLflow run's name (default: the run folder's name)"),
}


def build_mlflow(run_dir: Path, **options: Any) -> MlflowTracker:
    """Log parameters, per-epoch metrics and artifacts to MLflow."""
    parsed = parse_component_options("callback", NAME, options, OPTIONS)
    return MlflowTracker(Path(run_dir), parsed["tracking_uri"], parsed["experiment"], parsed["run_name"])


@segkit.hookimpl
def register_callbacks(register):
    register(
        NAME,
        build_mlflow,
        description="Log parameters, per-epoch metrics, best.pt and curves to MLflow "
        "(local store <out>/mlflow; pip install 'segkit[mlflow]')",
        default=False,
        options=OPTIONS,
    )
