"""The experiment trackers (callbacks ``tensorboard`` and ``mlflow``), read back with the trackers' own
readers: TensorBoard's ``EventAccumulator`` and MLflow's ``MlflowClient`` against the local store.

One tiny run with both trackers is trained once for this file, then resumed for one more epoch: the
resumed epochs must continue the same TensorBoard log dir and the same MLflow run."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from fixtures import error_line, invoke, run_cli, tiny_run
from hypothesis import given
from hypothesis import strategies as st

from segkit.callbacks import RunContext
from segkit_builtin.tracking import TrackerWarning, metric_name, numeric_metrics, run_description, task_kind

# SQLAlchemy 2.1 warns about a loader option MLflow's store uses; it concerns MLflow, not segkit.
pytestmark = pytest.mark.filterwarnings("ignore:The ``noload`` loader strategy:DeprecationWarning")

TRACKERS = (
    "--callback",
    "tensorboard",
    "--callback",
    "mlflow",
    "--callback-option",
    "tensorboard.image_every=1",
    "--callback-option",
    "tensorboard.images=2",
)
VALID_DICE = "valid/dice_per_image_t0.5"


def only_run_dir(out: Path) -> Path:
    """The one run folder in ``out``, beside the MLflow store the mlflow callback keeps there."""
    runs = [path for path in out.iterdir() if path.is_dir() and path.name != "mlflow"]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory) -> Path:
    """A two-epoch tiny run with both trackers and the default recorders, resumed to three epochs."""
    out = tmp_path_factory.mktemp("tracked")
    args = tiny_run(train_size=4, valid_size=2, batch_size=2, epochs=2)
    result = invoke("run", *args, *TRACKERS, "--out", out)
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(out)
    first_session = json.loads((run_dir / "trackers.json").read_text())
    resumed = invoke("run", "--resume", run_dir, "--epochs", 3, "--quiet", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run_dir / "trackers.json").read_text()) == first_session
    return run_dir


def csv_column(run_dir: Path, column: str) -> list[float]:
    with (run_dir / "metrics.csv").open() as handle:
        return [float(row[column]) for row in csv.DictReader(handle)]


def test_tensorboard_holds_every_epoch_once_with_named_scalars_pictures_and_settings(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recorded = json.loads((tracked_run / "trackers.json").read_text())["tensorboard"]
    assert Path(recorded["log_dir"]) == (tracked_run / "tensorboard").resolve()
    events = EventAccumulator(recorded["log_dir"], size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    tags = events.Tags()
    expected = {VALID_DICE, "valid/dice_pooled_t0.5", "train/loss", "valid/loss", "optim/learning_rate"}
    assert expected | {"speed/train_images_per_s"} <= set(tags["scalars"])
    dice = events.Scalars(VALID_DICE)
    assert [event.step for event in dice] == [1, 2, 3]  # the resumed epoch continues the same log
    assert [event.value for event in dice] == pytest.approx(csv_column(tracked_run, "valid_dice"))
    lr = [event.value for event in events.Scalars("optim/learning_rate")]
    assert lr == pytest.approx(csv_column(tracked_run, "lr"))
    pictures = [tag for tag in tags["images"] if tag.startswith("valid/images/")]
    assert len(pictures) == 2
    picture = events.Images(pictures[0])
    assert [event.step for event in picture] == [1, 2, 3]
    assert picture[0].width == 4 * 32 + 3 * 2 and picture[0].height == 32  # image|truth|prediction|errors
    assert {"settings/text_summary", "metrics/text_summary"} <= set(tags["tensors"])
    settings = events.Tensors("settings/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| image_size | 32 | flag |" in settings
    # Adding a tracker keeps the default recorders.
    assert (tracked_run / "metrics.csv").is_file() and (tracked_run / "model_performance.xlsx").is_file()


def test_mlflow_holds_one_run_with_params_metrics_per_epoch_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    recorded = json.loads((tracked_run / "trackers.json").read_text())["mlflow"]
    store = tracked_run.parent / "mlflow" / "mlflow.db"
    assert recorded["tracking_uri"] == f"sqlite:///{store.resolve()}" and store.is_file()
    client = MlflowClient(tracking_uri=recorded["tracking_uri"])
    run = client.get_run(recorded["run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1  # the resume continued it
    params, tags = run.data.params, run.data.tags
    assert params["image_size"] == "32" and params["model_options.base_channels"] == "4"
    assert tags["segkit.source.image_size"] == "flag" and tags["mlflow.runName"] == tracked_run.name
    assert tags["segkit.resumed.epochs"] == "3" and params["epochs"] == "2"
    history = client.get_metric_history(recorded["run_id"], VALID_DICE)
    assert sorted(metric.step for metric in history) == [1, 2, 3]
    by_step = {metric.step: metric.value for metric in history}
    assert [by_step[step] for step in (1, 2, 3)] == pytest.approx(csv_column(tracked_run, "valid_dice"))
    artifacts = {item.path for item in client.list_artifacts(recorded["run_id"])}
    assert {"best.pt", "config.json", "metrics.csv", "curves", "metric_descriptions.json"} <= artifacts
    curves = {item.path for item in client.list_artifacts(recorded["run_id"], "curves")}
    assert {"curves/loss.png", "curves/dice.png"} <= curves


def test_trackers_added_on_resume_first_log_the_epochs_already_trained(tmp_path):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    args = tiny_run(train_size=4, valid_size=2, batch_size=2, epochs=1, callbacks=("csv",))
    assert invoke("run", *args, "--out", tmp_path).exit_code == 0
    run_dir = only_run_dir(tmp_path)
    resumed = invoke("run", "--resume", run_dir, "--epochs", 2, "--quiet", "--device", "cpu", *TRACKERS)
    assert resumed.exit_code == 0, resumed.output
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.step for event in events.Scalars(VALID_DICE)] == [1, 2]
    recorded = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    history = MlflowClient(recorded["tracking_uri"]).get_metric_history(recorded["run_id"], VALID_DICE)
    assert sorted(metric.step for metric in history) == [1, 2]
    by_step = {metric.step: metric.value for metric in history}
    assert [by_step[1], by_step[2]] == pytest.approx(csv_column(run_dir, "valid_dice"))


@pytest.mark.parametrize(("callback", "modules"), [("tensorboard", ["tensorboard"]), ("mlflow", ["mlflow"])])
def test_a_missing_tracker_package_is_one_line_naming_the_extra(callback, modules, monkeypatch, tmp_path):
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # import now fails as if not installed
    args = tiny_run(train_size=2, valid_size=2, batch_size=2, epochs=1, callbacks=("csv", callback))
    result = run_cli("run", *args, "--out", tmp_path)
    assert result.exit_code == 2, result.output
    assert f"pip install 'segkit[{callback}]'" in error_line(result)
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # no run folder (or store) left behind


def test_run_help_says_callbacks_add_to_the_default_recorders():
    result = invoke("run", "--help")
    text = " ".join(result.output.split())
    assert "Add a callback to those that run by default (csv and excel)" in text
    assert "tensorboard" in text and "mlflow" in text


def test_tracker_options_are_checked(tmp_path):
    args = tiny_run(train_size=2, valid_size=2, batch_size=2, epochs=1, callbacks=("tensorboard",))
    result = run_cli("run", *args, "--callback-option", "tensorboard.images=-1", "--out", tmp_path)
    assert result.exit_code == 2
    assert "images" in error_line(result)


# -- a store or picture that fails ------------------------------------------------------------------------


class DownStore:
    """An MLflow client whose store is down: every call fails."""

    def __getattr__(self, name: str):
        def fail(*args, **kwargs):
            raise ConnectionError("store unreachable")

        return fail


def tracker_warnings(caught: list[warnings.WarningMessage]) -> list[tuple[str, str]]:
    return [(str(w.message), Path(w.filename).name) for w in caught if issubclass(w.category, TrackerWarning)]


def test_a_tracker_whose_store_is_down_warns_once_per_problem_and_training_goes_on(tmp_path):
    from segkit_builtin import mlflow_tracker, tensorboard_tracker

    # One warning class for every tracker: a user's filter on it quiets them all.
    assert mlflow_tracker.TrackerWarning is tensorboard_tracker.TrackerWarning is TrackerWarning
    (tmp_path / "config.json").write_text("{}")  # an artifact to store
    tracker = mlflow_tracker.build_mlflow(tmp_path)
    tracker.client, tracker.run_id = DownStore(), "run"
    context = RunContext(tmp_path, {"threshold": 0.5}, "unet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in (1, 2, 3):
            tracker.on_epoch_end(context, {"epoch": epoch, "valid_dice": 0.5})
        tracker.on_fit_end(context)
    down = "ConnectionError: store unreachable; training continues"
    assert tracker_warnings(caught) == [
        # pointing at the line that called the callback, as warnings do
        (f"segkit mlflow: could not log this epoch's metrics: {down}", Path(__file__).name),
        (f"segkit mlflow: could not store the artifacts: {down}", "mlflow_tracker.py"),
        (f"segkit mlflow: could not mark the run as ended: {down}", "mlflow_tracker.py"),
    ]


def test_tensorboard_pictures_that_fail_warn_once_and_scalars_go_on(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from segkit_builtin import tensorboard_tracker

    def no_pictures(run_dir, count):
        raise OSError("no best.pt")

    monkeypatch.setattr(tensorboard_tracker, "validation_pictures", no_pictures)
    tracker = tensorboard_tracker.build_tensorboard(tmp_path, image_every=1)
    context = RunContext(tmp_path, {"epochs": 3, "threshold": 0.5}, "unet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.on_fit_start(context)
        for epoch in (1, 2, 3):
            tracker.on_epoch_end(context, {"epoch": epoch, "valid_dice": epoch / 10})
        tracker.on_fit_end(context)
    assert [message for message, _ in tracker_warnings(caught)] == [
        "segkit tensorboard: could not draw validation pictures: OSError: no best.pt; training continues"
    ]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [event.value for event in events.Scalars(VALID_DICE)] == pytest.approx([0.1, 0.2, 0.3])


def test_trackers_read_a_run_description_they_cannot_parse_as_none(tmp_path):
    """A tracker never stops training: a config.json missing, corrupt or not an object describes nothing."""
    assert run_description(tmp_path) == {}
    for text in ("{not json", "[1, 2]", "\udcff"):
        (tmp_path / "config.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        assert run_description(tmp_path) == {}, text
    (tmp_path / "config.json").write_text('{"resolved": {"task": "multiclass"}}')
    assert task_kind(run_description(tmp_path)) == "multiclass"


# -- names ------------------------------------------------------------------------------------------------

NAME_CHARACTERS = re.compile(r"^[A-Za-z0-9_./-]+$")  # what both TensorBoard and MLflow accept
BINARY_COLUMNS = [
    "epoch", "train_loss", "train_dice", "valid_loss", "valid_dice", "valid_dice_dataset", "valid_iou", "lr",
    "epoch_time_s", "train_images_per_s", "skipped_steps", "train_image_size", "calibrated_threshold",
    "valid_dice_calibrated",
]  # fmt: skip


def test_binary_names_say_split_metric_reduction_and_threshold():
    assert metric_name("valid_dice", "binary", 0.5) == "valid/dice_per_image_t0.5"
    assert metric_name("valid_dice_dataset", "binary", 0.35) == "valid/dice_pooled_t0.35"
    assert metric_name("train_dice", "binary", 0.5) == "train/dice_per_image_t0.5"
    assert metric_name("epoch") is None
    names = [metric_name(column, "binary", 0.5) for column in BINARY_COLUMNS[1:]]
    assert len(set(names)) == len(names)


@given(
    classes=st.lists(
        st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12), min_size=1, max_size=6,
        unique=True,
    ),
    kind=st.sampled_from(["multiclass", "multilabel"]),
    threshold=st.floats(0.01, 0.99),
)  # fmt: skip
def test_names_of_a_run_with_classes_are_distinct_and_say_the_mask_rule(classes, kind, threshold):
    from segkit.task.base import class_record_fields

    scores = {f"{m}_{name}": 0.5 for m in ("iou", "dice") for name in classes}
    scores.update({f"{m}_macro_{r}": 0.5 for m in ("iou", "dice") for r in ("dataset", "per_image")})
    scores["iou_macro_all_dataset"] = 0.5
    record = {"epoch": 1, "train_loss": 0.3, "train_dice": 0.4, "valid_loss": 0.2}
    record.update(class_record_fields(scores, classes, all_classes=True))
    names = numeric_metrics(record, kind, threshold)
    assert len(names) == len(record) - 1  # every column but the epoch, none merged into another
    rule = "argmax" if kind == "multiclass" else f"t{threshold:g}"
    for column in record:
        name = metric_name(column, kind, threshold)
        if column.startswith("valid_") and column != "valid_loss":
            assert rule in name, (column, name)
        assert name is None or NAME_CHARACTERS.match(name), name
    for name in classes:
        assert metric_name(f"valid_iou_{name}", kind, threshold) == f"valid/iou_pooled_{rule}/{name}"


# -- under torchrun -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_under_torchrun_only_rank_zero_tracks(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = tiny_run(train_size=8, valid_size=4, batch_size=2, epochs=1)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "segkit", "run", *args, *TRACKERS, "--out", str(tmp_path / "runs")]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = only_run_dir(tmp_path / "runs")
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1

    from mlflow.tracking import MlflowClient

    recorded = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=recorded["tracking_uri"])
    experiment = client.get_run(recorded["run_id"]).info.experiment_id
    assert len(client.search_runs([experiment])) == 1
