"""benchmarks/smp_baseline.py (the plain smp loop ``--recipe auto`` is compared with), its row in
benchmarks/recipes_vs_auto.py, and the ``street-large`` kind of benchmarks/generated_datasets.py.

The baseline's score against per-image Dice and pooled IoU counted with numpy from fixed logits (at the
network size, and resized back to photos of another size), its loss over the pixels not ignored, the
input size rule (fuzzed), the time budget ending a real run of the script's ``main``; the benchmark's
arms and the baseline's command; the large street scenes' sizes and values, ``street`` unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import signal
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from segkit.task import BinaryTask, MulticlassTask

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """A benchmarks/ script as a module (benchmarks/ is not a package, and is kept off sys.path: its
    test_*.py names would shadow these)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


recipes_vs_auto = _load("recipes_vs_auto")  # smp_baseline imports score_of from it
smp_baseline = _load("smp_baseline")
generated_datasets = _load("generated_datasets")


class FixedLogits(torch.nn.Module):
    """A model that answers each batch with the next rows of fixed logits, whatever the photos."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.given = 0
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a device to be on

    def forward(self, photos: torch.Tensor) -> torch.Tensor:
        assert photos.shape[-2:] == self.logits.shape[-2:], "photos at the network size"
        batch = self.logits[self.given : self.given + len(photos)]
        self.given += len(photos)
        return batch.clone()


def _items(rng, count, size, masks, ignores):
    height, width = size
    return [
        smp_baseline.Item(
            f"p{index}",
            rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            masks[index],
            ignores[index],
        )
        for index in range(count)
    ]


# -- the score ---------------------------------------------------------------------------------------


def _dice_per_image(predicted, truth, ignore) -> float:
    scores = []
    for guess, real, skip in zip(predicted, truth, ignore, strict=True):
        counted = ~skip
        tp = np.sum(guess & real & counted)
        fp = np.sum(guess & ~real & counted)
        fn = np.sum(~guess & real & counted)
        scores.append(1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def _pooled_ious(predicted, truth, classes) -> list[float]:
    """IoU of each class over every counted pixel of the split (truth 255 counts for nothing)."""
    counted = truth != 255
    ious = []
    for cls in range(classes):
        tp = np.sum((predicted == cls) & (truth == cls) & counted)
        fp = np.sum((predicted == cls) & (truth != cls) & counted)
        fn = np.sum((predicted != cls) & (truth == cls) & counted)
        ious.append(math.nan if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return ious


def test_binary_score_is_per_image_dice_of_sigmoid_over_half_with_ignored_pixels_left_out():
    rng = np.random.default_rng(0)
    count, size = 11, (32, 64)  # 11 photos: two batches of 8 and 3
    # logits spread around 0 with many between 0 and 0.5: sigmoid > 0.5, not logit > 0.5
    logits = rng.uniform(-0.6, 0.6, (count, 1, *size)).astype(np.float32)
    logits[3] = -1.0  # nothing predicted, nothing true: scores 1
    truth = rng.random((count, *size)) < 0.4
    truth[3] = False
    ignore = rng.random((count, *size)) < 0.2
    items = _items(rng, count, size, truth.astype(np.uint8), ignore)
    result = smp_baseline.score(FixedLogits(torch.from_numpy(logits)), items, BinaryTask(0.5), size)
    expected = _dice_per_image(logits[:, 0] > 0, truth, ignore)
    assert result["metric"] == "Dice (per-image mean, original size)"
    assert result["score"] == pytest.approx(expected, abs=6e-5)  # rounded to 4 places


@pytest.mark.parametrize(
    "names, averaged",
    [(("background", "road", "pole"), [1, 2]), (("sky", "road", "pole", "car"), [0, 1, 2, 3])],
)
def test_multiclass_score_is_pooled_iou_over_the_foreground_classes(names, averaged):
    rng = np.random.default_rng(1)
    count, size, classes = 9, (32, 32), len(names)
    logits = rng.normal(size=(count, classes, *size)).astype(np.float32)
    truth = rng.integers(0, classes, (count, *size))
    truth[rng.random(truth.shape) < 0.15] = 255  # void
    items = _items(rng, count, size, truth, truth == 255)
    result = smp_baseline.score(FixedLogits(torch.from_numpy(logits)), items, MulticlassTask(names), size)
    ious = _pooled_ious(logits.argmax(axis=1), truth, classes)
    assert result["metric"] == "mean IoU (classes, pooled, original size)"
    assert result["score"] == pytest.approx(np.mean([ious[c] for c in averaged]), abs=6e-5)
    assert result["score_classes"] == [names[c] for c in averaged]
    assert result["iou_all_classes"] == pytest.approx(np.mean(ious), abs=6e-5)
    assert list(result["iou_per_class"]) == list(names)
    assert list(result["iou_per_class"].values()) == pytest.approx(ious, abs=6e-5)


def test_the_score_is_counted_at_each_photos_original_size():
    """Logits constant over each photo survive the resize back exactly: each photo is predicted one
    class, counted against its mask as read (another size than the network's, and than each other)."""
    rng = np.random.default_rng(2)
    names, network = ("background", "road", "pole"), (64, 96)
    sizes = [(40, 56), (37, 61), (50, 50), (41, 70)]
    truth = [rng.integers(0, 3, size) for size in sizes]
    for mask in truth:
        mask[rng.random(mask.shape) < 0.1] = 255
    choice = [1, 2, 0, 1]  # the class predicted everywhere on each photo
    logits = torch.zeros(len(sizes), 3, *network)
    for index, cls in enumerate(choice):
        logits[index, cls] = 5.0
    items = [
        smp_baseline.Item(f"p{index}", rng.integers(0, 256, (*size, 3), dtype=np.uint8), mask, mask == 255)
        for index, (size, mask) in enumerate(zip(sizes, truth, strict=True))
    ]
    result = smp_baseline.score(FixedLogits(logits), items, MulticlassTask(names), network)
    predicted = np.concatenate([np.full(mask.size, cls) for mask, cls in zip(truth, choice, strict=True)])
    ious = _pooled_ious(predicted, np.concatenate([mask.ravel() for mask in truth]), 3)
    assert list(result["iou_per_class"].values()) == pytest.approx(ious, abs=6e-5)
    assert result["score"] == pytest.approx((ious[1] + ious[2]) / 2, abs=6e-5)


# -- the loss ----------------------------------------------------------------------------------------


def test_the_loss_counts_only_the_pixels_not_ignored():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 8, 8))
    labels = rng.integers(0, 3, (2, 8, 8))
    labels[:, :3] = 255
    counted = labels != 255
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    chosen = np.take_along_axis(softmax, np.where(counted, labels, 0)[:, None], axis=1)[:, 0]
    expected = -np.log(chosen[counted]).mean()
    got = smp_baseline.loss_of(
        torch.from_numpy(logits), torch.from_numpy(labels), MulticlassTask(("a", "b", "c"))
    )
    assert float(got) == pytest.approx(expected, rel=1e-6)

    binary = np.where(counted, labels % 2, 255)
    probability = 1 / (1 + np.exp(-logits[:, 0]))
    bce = -(np.where(binary == 1, np.log(probability), np.log(1 - probability)))
    got = smp_baseline.loss_of(torch.from_numpy(logits[:, :1]), torch.from_numpy(binary), BinaryTask())
    assert float(got) == pytest.approx(bce[counted].mean(), rel=1e-6)


# -- the input size ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "photo, size",
    [((360, 480), (192, 256)), ((240, 320), (192, 256)), ((300, 300), (192, 192)), ((480, 360), (256, 192))],
)
def test_input_size_of_the_usual_photos(photo, size):
    assert smp_baseline.input_size([photo] * 3) == size


@given(
    st.lists(st.tuples(st.integers(16, 3000), st.integers(16, 3000)), min_size=1, max_size=9),
    st.sampled_from([32, 64, 192, 256]),
)
def test_input_size_keeps_the_median_aspect_with_the_short_side_given(photos, short):
    height, width = smp_baseline.input_size(photos, short)
    aspect = statistics.median(w / h for h, w in photos)
    assert height % 32 == 0 and width % 32 == 0
    assert min(height, width) == short
    if height != width:  # landscape stays landscape, portrait portrait
        assert (width > height) == (aspect > 1)
    assert abs(max(height, width) - short * max(aspect, 1 / aspect)) <= 16  # the nearest 32-step


# -- the budget --------------------------------------------------------------------------------------


@contextmanager
def fails_after(seconds: int):
    """A loop that ignores its budget fails the test instead of hanging the suite."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _write_folder(root: Path, split: str, count: int, rng) -> None:
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    for index in range(count):
        photo = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 20 + index : 50] = 255
        Image.fromarray(photo).save(root / split / "images" / f"{split}{index}.png")
        Image.fromarray(mask).save(root / split / "masks" / f"{split}{index}.png")


def test_the_budget_ends_training_and_counts_reading_the_data(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(4)
    _write_folder(tmp_path / "data", "train", 6, rng)
    _write_folder(tmp_path / "data", "valid", 2, rng)
    read_split = smp_baseline.read_split

    def slow_read(dataset, data_path, split, options):  # reading the training photos takes 2 s
        if split == "train":
            time.sleep(2)
        return read_split(dataset, data_path, split, options)

    monkeypatch.setattr(smp_baseline, "read_split", slow_read)
    budget = 3
    started = time.monotonic()
    with fails_after(30):
        smp_baseline.main(
            ["folder", str(tmp_path / "data"), f"{budget}s", "--size-short", "64", "--encoder", "resnet18"]
        )
    wall = time.monotonic() - started
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["input_size"] == [64, 96]  # 48x64 photos: short side 64, 85.3 rounded to 96
    assert line["budget_s"] == budget and line["train_photos"] == 6 and line["valid_photos"] == 2
    assert line["steps"] >= 1 and line["epochs"] == pytest.approx(line["steps"], abs=0.01)  # a batch a pass
    # trained until the budget, past it by one step at most, the 2 s of reading included
    assert budget <= line["seconds"] <= budget + 1.5
    assert wall - line["scoring_s"] <= budget + 1.5
    assert line["metric"] == "Dice (per-image mean, original size)" and 0 <= line["score"] <= 1


# -- the benchmark's rows ----------------------------------------------------------------------------


def test_arms_with_their_own_flags():
    assert recipes_vs_auto.parse_arm("auto") == ("auto", [])
    assert recipes_vs_auto.parse_arm("auto:--no-race") == ("auto", ["--no-race"])
    assert recipes_vs_auto.parse_arm("budget:--epochs 3 --seed 2") == (
        "budget",
        ["--epochs", "3", "--seed", "2"],
    )
    assert recipes_vs_auto.folder_name("auto:--no-race") == "auto-no-race"


def test_the_baseline_gets_the_dataset_options_and_seed_of_extra():
    command = recipes_vs_auto.baseline_command(
        "oxford_pet",
        "/data/pets",
        "15m",
        "--dataset-option task=trimap --model unet --seed=3 --dataset-option=a=b",
    )
    assert command[1:] == [
        str(BENCHMARKS / "smp_baseline.py"),
        "oxford_pet",
        "/data/pets",
        "15m",
        "--dataset-option",
        "task=trimap",
        "--seed",
        "3",
        "--dataset-option",
        "a=b",
    ]


def test_the_table_shows_the_baseline_and_each_class():
    summary = {
        "classes": ["a", "b"],
        "original_resolution": {"iou_macro_dataset": 0.5, "iou_a": 0.25, "iou_b": 0.75},
    }
    baseline = {"input_size": [192, 256], "steps": 40}
    rows = [
        {"case": "s", "recipe": "auto:--no-race", "score": 0.5, "metric": "m", "epochs": 3,
         "iou_per_class": recipes_vs_auto.class_ious(summary)},
        {"case": "s", "recipe": "smp Unet-ResNet34 loop", "score": 0.6, "metric": "m", "epochs": 2.5,
         "iou_per_class": {"a": 0.3, "b": 0.9}, "baseline": baseline},
    ]  # fmt: skip
    lines = recipes_vs_auto.table(rows).splitlines()
    assert lines[2] == "| s | auto:--no-race | 0.5000 | m | 3 |  | 0.25 0.75 |"
    assert (
        lines[3]
        == "| s | smp Unet-ResNet34 loop | 0.6000 | m | 2.5 | whole photos at 192x256, 40 steps | 0.30 0.90 |"
    )


# -- street-large ------------------------------------------------------------------------------------


def test_street_large_draws_360x480_scenes_of_class_ids_and_void(tmp_path):
    scene, counts, classes = generated_datasets.KINDS["street-large"]
    assert counts == {"train": 370, "valid": 100, "test": 40}
    assert classes == generated_datasets.STREET_CLASSES and len(classes) == 11
    generated_datasets.write_folder(tmp_path, scene, {"train": 2}, classes=classes)
    for name in ("train-0000", "train-0001"):
        photo = Image.open(tmp_path / "train" / "images" / f"{name}.jpg")
        mask = np.asarray(Image.open(tmp_path / "train" / "masks" / f"{name}.png"))
        assert photo.mode == "RGB" and photo.size == (480, 360)
        assert mask.shape == (360, 480) and mask.dtype == np.uint8
        values = set(np.unique(mask).tolist())
        assert values <= set(range(11)) | {255}
        assert 255 in values and len(values - {255}) >= 5  # void borders, and most of the street
    assert (tmp_path / "classes.txt").read_text().split() == list(classes)


def test_street_and_thin_draw_the_same_files_as_before():
    """The digests of scenes drawn before street-large existed (its scaling is exactly 1 at 240x320)."""
    digests = {
        (
            generated_datasets.street_scene,
            0,
        ): "48067ec327f23370fc073c24b0decfafc881134180324456983a1a5700e32f07",
        (
            generated_datasets.street_scene,
            10001,
        ): "75835e2ad031cdba90f62230f58044488b0f0f37df6b5caa263717d09521af58",
        (
            generated_datasets.street_scene,
            110005,
        ): "ff6e2a39c4cd0156413dface5ef345c369410116963daf49bff441ea77d167a2",
        (
            generated_datasets.thin_scene,
            0,
        ): "b9ada31d8243ff3d5ec58f557148983d22e5073ceedfc534dd6b23e7470c1be5",
    }
    for (scene, seed), digest in digests.items():
        photo, mask = scene(seed)
        assert hashlib.sha256(photo.tobytes() + mask.tobytes()).hexdigest() == digest, (scene.__name__, seed)
