"""Multi-class and multi-label models from the command line: train, evaluate, predict, plot, export,
with the same commands as a binary model, and the bad inputs such tasks bring."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from data_fixtures import write_multiclass_folder
from fixtures import invoke, only_run_dir, tiny_run
from PIL import Image

from segkit.checkpoint_files import load_checkpoint

SYNTHETIC_CLASSES = ["background", "ellipse", "polygon", "star"]


@pytest.fixture(scope="module")
def multiclass_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multiclass")
    args = tiny_run(train_size=32, valid_size=8, batch_size=8, epochs=2, loss="ce_dice")
    result = invoke("run", *args, "--dataset-option", "task=multiclass", "--out", out)
    assert result.exit_code == 0, result.output
    return only_run_dir(out), result.output


def test_a_multiclass_run_records_per_class_figures_and_picks_by_mean_iou(multiclass_run):
    run_dir, output = multiclass_run
    with (run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2
    for name in SYNTHETIC_CLASSES:
        assert f"valid_iou_{name}" in rows[0] and f"valid_dice_{name}" in rows[0]
    mean = np.nanmean([float(rows[-1][f"valid_iou_{name}"]) for name in SYNTHETIC_CLASSES[1:]])
    assert float(rows[-1]["valid_iou"]) == pytest.approx(mean)  # the mean leaves background out
    labels = json.loads((run_dir / "config.json").read_text())["metrics"]
    assert "3 foreground classes (ellipse, polygon, star)" in labels["valid_iou"]
    assert "Best valid mean IoU" in output
    checkpoint = load_checkpoint(run_dir / "best.pt")
    assert checkpoint["task"] == "multiclass" and checkpoint["class_names"] == SYNTHETIC_CLASSES
    assert checkpoint["out_channels"] == 4 and len(checkpoint["palette"]) == 4
    best = max(range(2), key=lambda index: float(rows[index]["valid_iou"]))
    assert checkpoint["epoch"] == best + 1
    from openpyxl import load_workbook

    header = [cell.value for cell in next(load_workbook(run_dir / "model_performance.xlsx").active.rows)]
    assert "UNet Val mIoU" in header and all(f"UNet Val IoU {name}" in header for name in SYNTHETIC_CLASSES)


def test_evaluate_prints_a_per_class_table_and_draws_the_confusion_matrix(multiclass_run, tmp_path):
    run_dir, _ = multiclass_run
    result = invoke("evaluate", run_dir, "--split", "valid", "--device", "cpu", "-q", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    assert "threshold none (argmax)" in result.output
    for name in SYNTHETIC_CLASSES:
        assert name in result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    matrix = np.array(summary["confusion_matrix"]["pixels"])
    assert matrix.shape == (4, 4) and matrix.sum() == 8 * 32 * 32  # every pixel of 8 images, none void
    scores = summary["network_resolution"]
    true_positives = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positives
    for index, name in enumerate(SYNTHETIC_CLASSES):  # the table agrees with the confusion matrix
        assert scores[f"iou_{name}"] == pytest.approx(true_positives[index] / union[index])
    assert Image.open(tmp_path / "confusion_matrix.png").size[0] > 100


def test_predict_writes_index_masks_overlays_and_probability_maps(multiclass_run, tmp_path):
    run_dir, _ = multiclass_run
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "out"
    result = invoke("predict", run_dir, photo, "-o", out, "--probabilities", "--device", "cpu")
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "photo_mask.png")
    assert mask.mode == "P" and mask.size == (70, 45)
    assert set(np.unique(np.asarray(mask))) <= set(range(4))
    overlay = Image.open(out / "photo_overlay.png")  # the photo, its class legend in a strip below
    assert overlay.size[1] > 45 and overlay.size[0] >= 70
    maps = [np.asarray(Image.open(out / f"photo_prob_{name}.png"), float) for name in SYNTHETIC_CLASSES]
    assert np.allclose(sum(maps), 255, atol=4)  # softmax probabilities sum to one (8-bit rounding)
    assert np.array_equal(
        np.argmax(maps, axis=0)[np.ptp(maps, axis=0) > 8], np.asarray(mask)[np.ptp(maps, axis=0) > 8]
    )


def test_plot_draws_per_class_curves_and_export_says_to_take_the_argmax(multiclass_run, tmp_path):
    run_dir, _ = multiclass_run
    assert invoke("plot", run_dir, "-o", tmp_path).exit_code == 0
    assert (tmp_path / "classes.png").is_file()
    result = invoke("export", run_dir, "--format", "torchscript", "-o", tmp_path / "model.torchscript.pt")
    assert result.exit_code == 0, result.output
    notes = json.loads((tmp_path / "model.torchscript.pt.json").read_text())
    assert notes["output"]["classes"] == SYNTHETIC_CLASSES and "argmax" in notes["output"]["kind"]


FOLDER_CLASSES = ["background", "cat", "dog"]


def test_evaluate_per_class_figures_equal_a_count_over_predicts_index_masks(tmp_path):
    """What evaluate reports per class at original resolution is what a user computes from the index
    PNGs predict writes for the same photos and the masks on disk: same split, same (original)
    resolution, no post-processing, ignored pixels (255) left out."""
    data = tmp_path / "data"
    truth = write_multiclass_folder(data, [f"p{index:02d}" for index in range(12)], size=(44, 52))
    folder = ["--dataset", "folder", "--data-path", data, "--dataset-option", "valid_fraction=0.34"]
    result = invoke(
        "run", *tiny_run(epochs=2, batch_size=4, loss="ce_dice"), *folder, "--out", tmp_path / "runs"
    )
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    evaluated = tmp_path / "evaluated"
    result = invoke("evaluate", run_dir, "--split", "valid", "-q", "-o", evaluated)
    assert result.exit_code == 0, result.output
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["postprocess"] == "none" and summary["split"] == "valid"
    scores = summary["original_resolution"]
    with (evaluated / "per_image.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    names = [row["name"] for row in rows]
    assert len(names) == 4 and set(names) <= set(truth)

    predicted_folder = tmp_path / "predicted"
    photos = [data / "images" / f"{name}.png" for name in names]
    result = invoke("predict", run_dir, *photos, "-o", predicted_folder, "--no-overlay")
    assert result.exit_code == 0, result.output
    predicted = {name: np.asarray(Image.open(predicted_folder / f"{name}_mask.png")) for name in names}
    assert all(mask.shape == (44, 52) for mask in predicted.values())  # the photo's own size
    assert len(np.unique(np.concatenate([m.ravel() for m in predicted.values()]))) > 1  # not one class

    classes = len(FOLDER_CLASSES)
    confusion = np.zeros((classes, classes), np.int64)
    for row in rows:
        name = row["name"]
        valid = truth[name] != 255
        for index, cls in enumerate(FOLDER_CLASSES):
            true_c, said_c = (truth[name] == index) & valid, (predicted[name] == index) & valid
            union, both = (true_c | said_c).sum(), (true_c & said_c).sum()
            expected = both / union if union else float("nan")
            got = float(row[f"iou_{cls}"])
            assert (np.isnan(got) and np.isnan(expected)) or got == pytest.approx(expected), (name, cls)
        np.add.at(confusion, (truth[name][valid], predicted[name][valid]), 1)
    assert summary["confusion_matrix"]["pixels"] == confusion.tolist()
    both = np.diag(confusion)
    iou = both / (confusion.sum(axis=0) + confusion.sum(axis=1) - both)
    dice = 2 * both / (confusion.sum(axis=0) + confusion.sum(axis=1))
    for index, cls in enumerate(FOLDER_CLASSES):
        assert scores[f"iou_{cls}"] == pytest.approx(iou[index])
        assert scores[f"dice_{cls}"] == pytest.approx(dice[index])
    assert scores["iou_macro_dataset"] == pytest.approx(iou[1:].mean())  # the foreground classes
    assert scores["iou_macro_all_dataset"] == pytest.approx(iou.mean())


def test_a_binary_loss_on_a_multiclass_dataset_names_the_losses_that_fit(tmp_path):
    result = invoke(
        "run",
        *tiny_run(train_size=8, valid_size=4, epochs=1, loss="bce_dice"),
        "--dataset-option",
        "task=multiclass",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "for a multiclass task use one of: ce, ce_dice" in result.output


def test_class_weights_of_the_wrong_length_are_a_usage_error(tmp_path):
    result = invoke(
        "run",
        *tiny_run(train_size=8, valid_size=4, epochs=1, loss="ce"),
        "--dataset-option",
        "task=multiclass",
        "--loss-option",
        "class_weights=[1,2]",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 2
    assert "class_weights" in result.output and "4" in result.output


def test_evaluating_on_a_dataset_with_other_classes_is_refused(multiclass_run, tiny_pets):
    run_dir, _ = multiclass_run
    result = invoke(
        "evaluate",
        run_dir,
        "--dataset",
        "oxford_pet",
        "--data-path",
        tiny_pets,
        "--dataset-option",
        "task=trimap",
        "--split",
        "test",
        "--device",
        "cpu",
        "-q",
    )
    assert result.exit_code == 2
    assert "4 classes" in result.output and "3" in result.output


def write_multilabel_folder(root, count=10, size=24):
    rng = np.random.default_rng(0)
    for folder in ("images", "masks_cat", "masks_collar"):
        (root / folder).mkdir(parents=True)
    for index in range(count):
        photo = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        cat = np.zeros((size, size), np.uint8)
        cat[4:18, 4:18] = 255
        collar = np.zeros((size, size), np.uint8)
        collar[14:18, 4:18] = 255  # overlaps the cat
        photo[cat > 0] = (200, 120, 40)
        photo[collar > 0] = (20, 20, 200)
        Image.fromarray(photo).save(root / "images" / f"p{index}.png")
        Image.fromarray(cat).save(root / "masks_cat" / f"p{index}.png")
        Image.fromarray(collar).save(root / "masks_collar" / f"p{index}.png")
    return root


def test_a_multilabel_folder_trains_evaluates_and_predicts_overlapping_masks(tmp_path):
    data = write_multilabel_folder(tmp_path / "data")
    args = tiny_run(epochs=2, batch_size=4, image_size=24, loss="bce_dice", loss_option="per_channel=true")
    options = ["--dataset", "folder", "--data-path", data, "--dataset-option", "labels=cat,collar"]
    result = invoke("run", *args, *options, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    assert load_checkpoint(run_dir / "best.pt")["task"] == "multilabel"
    evaluation = invoke("evaluate", run_dir, "--split", "valid", "--device", "cpu", "-q")
    assert evaluation.exit_code == 0, evaluation.output
    assert "cat" in evaluation.output and "collar" in evaluation.output
    out = tmp_path / "predicted"
    assert invoke("predict", run_dir, data / "images" / "p0.png", "-o", out, "--device", "cpu").exit_code == 0
    assert (out / "p0_mask_cat.png").is_file() and (out / "p0_mask_collar.png").is_file()
