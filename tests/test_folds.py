"""Folds and ensembles (issue 28): the folds are a partition, deterministic and stratified; a fold run
trains and validates on its fold; the ensemble of K identical models is that model; a choice made out
of fold is kept only when it helps by more than its standard error; a half-finished parent resumes only
its missing folds; evaluate, predict, report, plot, export and ``segkit.train`` take the parent."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fixtures import invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st

import segkit
from segkit.config.resolve import ResolvedConfig
from segkit.config.run_folder import FINISHED_FILE, FOLDS_FILE, fold_folder
from segkit.data import folds as folds_module
from segkit.data.folds import FoldSubset, assign_folds, fold_split, photo_strata
from segkit.errors import DataError
from segkit.inference.ensemble import EnsembleModule
from segkit.inference.forward import model_logits
from segkit.metrics.binary import confusion_counts
from segkit.metrics.classes import class_scores, multiclass_counts
from segkit.reporting import out_of_fold
from segkit.reporting.out_of_fold import HeldOut, choose, paired_gain

# -- the folds ----------------------------------------------------------------------------------------

strata_maps = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=6).map(lambda name: f"train:{name}"),
    st.sampled_from(["foreground", "none", "car", "bike"]),
    min_size=2,
    max_size=60,
)


@settings(max_examples=60, deadline=None)
@given(strata=strata_maps, folds=st.integers(2, 7), seed=st.integers(0, 2**31))
def test_folds_are_a_stratified_partition_decided_by_the_seed_alone(strata, folds, seed):
    if len(strata) < folds:
        with pytest.raises(DataError, match="cannot be cut into"):
            assign_folds(strata, folds, seed)
        return
    assignment = assign_folds(strata, folds, seed)
    assert set(assignment) == set(strata)  # every photo in exactly one fold (a dict: at most one)
    assert set(assignment.values()) <= set(range(folds))
    sizes = np.bincount(list(assignment.values()), minlength=folds)
    assert sizes.max() - sizes.min() <= 1 and sizes.min() >= 1
    for stratum in set(strata.values()):
        counts = np.bincount([assignment[k] for k, s in strata.items() if s == stratum], minlength=folds)
        assert counts.max() - counts.min() <= 1, (stratum, counts)
    reordered = dict(reversed(list(strata.items())))
    assert assign_folds(reordered, folds, seed) == assignment  # the order photos are listed in: no matter


def test_another_seed_cuts_other_folds():
    strata = {f"train:p{i:02d}": "none" for i in range(40)}
    assert assign_folds(strata, 5, 0) != assign_folds(strata, 5, 1)
    assert assign_folds(strata, 5, 0) == assign_folds(strata, 5, 0)


class MaskSplit:
    """A split of made-up masks read through ``original_mask`` (as the file datasets give them)."""

    def __init__(self, names, masks, task="binary", class_names=None):
        self.names, self.masks, self.task = list(names), list(masks), task
        if class_names is not None:
            self.class_names = class_names

    def __len__(self):
        return len(self.names)

    def original_mask(self, index):
        return self.masks[index], None


def test_strata_are_foreground_or_not_and_the_rarest_class_present():
    empty, full = np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8)
    binary = photo_strata([("train", MaskSplit(["a", "b"], [empty, full]))], "binary")
    assert binary == {"train:a": "none", "train:b": "foreground"}
    # class 1 in three photos, class 2 in one: a photo holding both is in class 2's stratum
    masks = [np.array([[0, 1]]), np.array([[1, 2]]), np.array([[1, 1]]), np.array([[0, 0]])]
    split = MaskSplit("abcd", masks, "multiclass", ["background", "road", "rider"])
    strata = photo_strata([("train", split)], "multiclass")
    assert strata == {"train:a": "road", "train:b": "rider", "train:c": "road", "train:d": "none"}


class PairSplit:
    """A split of file pairs as ``PairedImageDataset`` holds them (``pairs``, ``image_sizes``)."""

    def __init__(self, split, count):
        self.split = split
        self.pairs = [SimpleNamespace(name=f"{split}{i}") for i in range(count)]
        self.image_sizes = [(i, i) for i in range(count)]
        self.decoded_cache = "stale"

    @property
    def names(self):
        return [pair.name for pair in self.pairs]

    def __len__(self):
        return len(self.pairs)


@pytest.mark.parametrize("paired", [True, False])
def test_a_folds_train_and_valid_splits_are_the_pool_without_and_with_its_photos(paired):
    made = []

    def make(split, train):
        made.append((split, train))
        if not paired:
            return MaskSplit([f"{split}{i}" for i in range(5)], [np.zeros((2, 2))] * 5)
        return PairSplit(split, 5 if split == "train" else 3)

    pool = [f"train:train{i}" for i in range(5)] + [f"valid:valid{i}" for i in range(5 if not paired else 3)]
    held_out = sorted(pool[1::3])
    fold = {"index": 1, "folds": 3, "seed": 0, "held_out": held_out}
    train, valid = fold_split(make, "train", fold), fold_split(make, "valid", fold)
    assert ("valid", True) in made and ("valid", False) in made  # built as for training / evaluation
    if paired:
        assert {p.name for p in valid.pairs} == {key.split(":")[1] for key in held_out}
        assert {p.name for p in train.pairs} | {p.name for p in valid.pairs} == {
            k.split(":")[1] for k in pool
        }
        assert train.decoded_cache is None
        for chosen in (train, valid):  # each pair keeps its own photo's size
            assert [size for size, _ in chosen.image_sizes] == [int(p.name[5:]) for p in chosen.pairs]
    else:
        assert isinstance(train, FoldSubset)
        assert sorted(valid.names) == sorted(key.split(":")[1] for key in held_out)
        assert set(train.names).isdisjoint(valid.names) and len(train) + len(valid) == len(pool)
    with pytest.raises(DataError, match="no longer has"):
        fold_split(make, "valid", {**fold, "held_out": ["train:gone"]})


# -- the ensemble ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("tta", [False, True])
def test_the_ensemble_of_identical_models_is_the_model(kind, tta):
    torch.manual_seed(0)
    channels = 1 if kind == "binary" else 3
    model = torch.nn.Conv2d(3, channels, 3, padding=1).eval()
    images = torch.randn(2, 3, 8, 10)
    ensemble = EnsembleModule([model, model, model], kind)
    one, three = model_logits(model, images, tta), model_logits(ensemble, images, tta)
    activate = (lambda x: torch.softmax(x, 1)) if kind == "multiclass" else torch.sigmoid
    torch.testing.assert_close(activate(three), activate(one), atol=1e-6, rtol=1e-5)


def test_the_ensemble_averages_probabilities_after_each_members_flip():
    torch.manual_seed(1)
    a, b = torch.nn.Conv2d(3, 1, 3, padding=1), torch.nn.Conv2d(3, 1, 3, padding=1)
    images = torch.randn(1, 3, 6, 9)
    ensemble = EnsembleModule([a, b], "binary")
    expected = (
        torch.sigmoid(model_logits(a, images, True)) + torch.sigmoid(model_logits(b, images, True))
    ) / 2
    torch.testing.assert_close(torch.sigmoid(model_logits(ensemble, images, True)), expected)
    # the averaged logits would be another answer: the ensemble does not average logits
    logit_mean = torch.sigmoid((model_logits(a, images, True) + model_logits(b, images, True)) / 2)
    assert not torch.allclose(logit_mean, expected, atol=1e-4)


def test_a_multilabel_ensemble_folds_each_labels_threshold_into_its_logits():
    model = torch.nn.Conv2d(3, 2, 1)
    images = torch.randn(1, 3, 5, 5)
    plain = torch.sigmoid(model(images))
    shifted = EnsembleModule([model], "multilabel", [0.3, 0.7])(images)
    expected = torch.stack([plain[:, 0] > 0.3, plain[:, 1] > 0.7], 1)
    assert torch.equal(shifted > 0, expected)


# -- scoring and choosing out of fold ------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["binary", "multiclass"]))
def test_a_photos_score_matches_the_metrics_module(seed, kind):
    rng = np.random.default_rng(seed)
    if kind == "binary":
        truth = rng.random((6, 7)) < rng.random()
        predicted = rng.random((6, 7)) < rng.random()
        photo = HeldOut("p", 0, {False: predicted.astype(np.float16)}, truth.astype(np.uint8), None)
        counts = out_of_fold.class_counts(predicted, photo, "binary", 1)
        logits = torch.as_tensor(np.where(predicted, 5.0, -5.0))[None, None]
        tp, fp, fn, _ = confusion_counts(logits, torch.as_tensor(truth)[None, None])[0].tolist()
        expected = 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)
        assert math.isclose(out_of_fold.photo_score(counts, "binary", [0]), expected)
        return
    truth, predicted = rng.integers(0, 3, (6, 7)), rng.integers(0, 3, (6, 7))
    photo = HeldOut("p", 0, {False: predicted.astype(np.uint8)}, truth, None)
    counts = out_of_fold.class_counts(predicted, photo, "multiclass", 3)
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(predicted), 3).permute(2, 0, 1)[None].float()
    reference, _ = multiclass_counts(one_hot, torch.as_tensor(truth)[None])
    iou = class_scores(reference[0])["iou"][1:]
    expected = float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else math.nan
    got = out_of_fold.photo_score(counts, "multiclass", [1, 2])
    assert (math.isnan(got) and math.isnan(expected)) or math.isclose(got, expected)


def test_a_step_is_kept_only_when_its_gain_exceeds_its_standard_error():
    without = np.full(10, 0.5)
    noisy = without + np.array([0.3, -0.2, 0.25, -0.2, 0.1, -0.15, 0.2, -0.2, 0.05, -0.1])  # gain 0.005
    steady = without + 0.01  # the same small gain on every photo: no spread
    assert not out_of_fold.decide("keep_largest", "all", True, without, noisy).kept
    kept = out_of_fold.decide("keep_largest", "all", True, without, steady)
    assert kept.kept and kept.gain == pytest.approx(0.01) and kept.standard_error == pytest.approx(0.0)
    assert not out_of_fold.decide("fill_holes", "all", True, without, without.copy()).kept  # no change
    assert not out_of_fold.decide("tta", "all", True, without, without - 0.01).kept


def test_a_photo_with_nothing_to_find_and_nothing_found_scores_one():
    empty = np.zeros((4, 4), bool)
    photo = HeldOut("p", 0, {False: empty.astype(np.float16)}, empty.astype(np.uint8), None)
    assert out_of_fold.photo_score(out_of_fold.class_counts(empty, photo, "binary", 1), "binary", [0]) == 1.0
    missed = HeldOut("p", 0, {False: empty.astype(np.float16)}, np.ones((4, 4), np.uint8), None)
    assert out_of_fold.photo_score(out_of_fold.class_counts(empty, missed, "binary", 1), "binary", [0]) == 0.0


def test_each_fold_trains_an_equal_part_of_the_budget_after_planning_and_the_out_of_fold_share():
    from segkit.racing.folds import OUT_OF_FOLD_SHARE, fold_budget

    assert fold_budget(None, 3.0, 5) is None
    assert fold_budget(600.0, 10.0, 5) == pytest.approx((600 * (1 - OUT_OF_FOLD_SHARE) - 10) / 5)
    assert fold_budget(600.0, 10.0, 2) == pytest.approx(2.5 * fold_budget(600.0, 10.0, 5))


def test_the_paired_gain_and_its_standard_error():
    without, with_ = np.array([0.5, 0.6, 0.7, np.nan]), np.array([0.6, 0.6, 0.9, 0.8])
    gain, error, photos = paired_gain(without, with_)
    differences = np.array([0.1, 0.0, 0.2])
    assert photos == 3 and math.isclose(gain, differences.mean())
    assert math.isclose(error, differences.std(ddof=1) / math.sqrt(3))


def _disc(size=24, radius=7, hole=0):
    yy, xx = np.mgrid[:size, :size]
    distance = np.hypot(yy - size / 2, xx - size / 2)
    return (distance <= radius) & (distance >= hole)


def _photo(name, probability, truth, fold=0):
    probability = probability.astype(np.float16)
    return HeldOut(name, fold, {False: probability, True: probability}, truth.astype(np.uint8), None)


def test_a_clean_up_that_does_not_help_is_not_kept_and_one_that_helps_is():
    rng = np.random.default_rng(0)
    # truth: discs with a hole; predictions: the same with noise inside the disc.
    photos = []
    for index in range(12):
        truth = _disc(hole=3)
        probability = np.where(truth, 0.9, 0.1) + rng.normal(0, 0.01, truth.shape)
        photos.append(_photo(f"p{index}", probability, truth, index % 3))
    settings_, choices = choose(photos, "binary", ["foreground"], [0])
    by_step = {choice.step: choice for choice in choices}
    # filling the hole the truth has makes every photo worse: not kept; keep_largest changes nothing
    assert by_step["fill_holes"].gain < 0 and not by_step["fill_holes"].kept and not settings_.fill_holes
    assert by_step["keep_largest"].gain == 0 and not by_step["keep_largest"].kept
    # now specks outside the disc on every photo: keeping the largest component helps
    specked = []
    for photo in photos:
        probability = photo.predicted[False].astype(np.float32)
        probability[1:3, 1:3] = 0.95
        specked.append(_photo(photo.name, probability, photo.truth, photo.fold))
    settings_, choices = choose(specked, "binary", ["foreground"], [0])
    largest = next(choice for choice in choices if choice.step == "keep_largest")
    assert largest.kept and settings_.keep_largest and largest.gain > largest.standard_error


def test_a_choice_that_helps_some_photos_and_hurts_others_is_not_kept():
    photos = []
    for index in range(10):
        truth = _disc()
        probability = np.where(truth, 0.9, 0.1)
        if index % 2:  # a speck the truth holds too (kept by the truth)...
            probability[1:3, 1:3] = 0.95
            truth = truth.copy()
            truth[1:3, 1:3] = True
        else:  # ...or one it does not
            probability[1:3, 1:3] = 0.95
        photos.append(_photo(f"p{index}", probability, truth))
    _, choices = choose(photos, "binary", ["foreground"], [0])
    largest = next(choice for choice in choices if choice.step == "keep_largest")
    assert not largest.kept and largest.gain <= largest.standard_error


def test_the_threshold_chosen_is_kept_only_with_its_two_numbers():
    rng = np.random.default_rng(3)
    photos = []
    for index in range(15):
        probability = rng.random((16, 16))
        truth = probability > 0.3  # the right threshold is 0.3
        photos.append(_photo(f"p{index}", probability, truth))
    settings_, choices = choose(photos, "binary", ["foreground"], [0])
    threshold = next(choice for choice in choices if choice.step == "threshold")
    assert (
        threshold.value == pytest.approx(0.3) and threshold.kept and settings_.threshold == pytest.approx(0.3)
    )
    record = threshold.record()
    assert record["with"] > record["without"] and record["standard_error"] < record["gain"]


def test_multiclass_clean_up_is_chosen_class_by_class():
    photos = []
    for index in range(8):
        truth = np.zeros((24, 24), np.uint8)
        truth[4:12, 4:12], truth[14:20, 14:20] = 1, 2
        predicted = truth.copy()
        predicted[22:24, 0:2] = 1  # a speck of class 1 on every photo; class 2 is clean
        photos.append(HeldOut(f"p{index}", 0, {False: predicted, True: predicted}, truth, None))
    settings_, choices = choose(photos, "multiclass", ["background", "a", "b"], [1, 2])
    assert settings_.class_steps["keep_largest"] == [1]
    kept = {(choice.step, choice.target) for choice in choices if choice.kept}
    assert kept == {("keep_largest", "a")}


def test_multilabel_thresholds_are_chosen_label_by_label():
    rng = np.random.default_rng(5)
    photos = []
    for index in range(12):
        probability = rng.random((2, 12, 12))
        truth = np.stack([probability[0] > 0.5, probability[1] > 0.25])
        photos.append(_photo(f"p{index}", probability, truth))
    settings_, _ = choose(photos, "multilabel", ["a", "b"], [0, 1])
    assert settings_.label_thresholds[0] == 0.5 and settings_.label_thresholds[1] == pytest.approx(0.25)


# -- the command line ------------------------------------------------------------------------------------


def _fold_args(root, out, *extra):
    args = tiny_run(batch_size=6, epochs=1, dataset="oxford_pet", data_path=root, augment="none")
    return ["run", *args, "--out", out, *extra]


@pytest.fixture(scope="module")
def fold_parent(tiny_pets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folds")
    result = invoke(*_fold_args(tiny_pets, out, "--folds", "3"))
    assert result.exit_code == 0, result.output
    return only_run_dir(out)


def test_a_fold_run_trains_each_fold_on_the_others_and_records_its_choices(fold_parent):
    record = json.loads((fold_parent / FOLDS_FILE).read_text())
    assert record["folds"] == 3 and record["photos"] == 20  # tiny_pets: 20 trainval photos pooled
    held = [json.loads((fold_folder(fold_parent, i) / "fold.json").read_text())["held_out"] for i in range(3)]
    assert sorted(sum(held, [])) == sorted(record["assignment"])
    for index in range(3):
        config = json.loads((fold_folder(fold_parent, index) / "config.json").read_text())
        assert config["resolved"]["valid_images"] == len(held[index])
        assert config["resolved"]["train_images"] == 20 - len(held[index])
        assert (fold_folder(fold_parent, index) / FINISHED_FILE).is_file()
    summary = record["out_of_fold"]
    assert [row["photos"] for row in summary["folds"]] == [len(h) for h in held]
    assert {"tta", "threshold", "fill_holes", "keep_largest"} <= set(record["inference"])
    assert all({"without", "with", "gain", "standard_error", "kept"} <= set(c) for c in summary["choices"])
    scores = [row["score"] for row in summary["folds"]]
    assert summary["mean"] == pytest.approx(np.mean(scores))
    assert summary["std"] == pytest.approx(np.std(scores, ddof=1))


def test_the_parent_is_evaluated_as_an_ensemble_with_its_folds_spread(fold_parent):
    result = invoke("evaluate", fold_parent, "--split", "test")
    assert result.exit_code == 0, result.output
    assert "ensemble of the 3 folds" in result.output
    folds = json.loads((fold_parent / FOLDS_FILE).read_text())["out_of_fold"]
    assert f"mean {folds['mean']:.4f} +- {folds['std']:.4f}" in result.output
    assert all(f"fold {row['fold']}: {row['score']:.4f}" in result.output for row in folds["folds"])
    summary = json.loads((fold_parent / "eval-test" / "summary.json").read_text())
    assert summary["folds"]["folds"][0]["fold"] == 0
    leaky = invoke("evaluate", fold_parent, "--split", "valid")
    assert leaky.exit_code == 0 and "not scored on the valid split" in leaky.output
    assert not (fold_parent / "eval-valid").exists()


def test_the_parent_predicts_reports_plots_and_exports(fold_parent, tiny_pets, tmp_path):
    predicted = invoke(
        "predict", fold_parent, tiny_pets / "images" / "cat_0.jpg", "--out", tmp_path / "masks"
    )
    assert predicted.exit_code == 0, predicted.output
    report = invoke("report", fold_parent, "--out", tmp_path / "page.html")
    assert report.exit_code == 0, report.output
    page = (tmp_path / "page.html").read_text()
    assert (
        '<h2 id="folds">' in page and "score with the choices" in page and "Choices made out of fold" in page
    )
    summary = json.loads((fold_parent / FOLDS_FILE).read_text())["out_of_fold"]
    for row in summary["folds"]:
        assert (
            f'num">{row["score"]:.4f}</td>' in page
            and f'num">{row["score_without_choices"]:.4f}</td>' in page
        )
    assert f"{summary['mean']:.4f} +- {summary['std']:.4f}" in page
    assert page.count("not kept") + page.count(">kept<") >= len(summary["choices"])
    plotted = invoke("plot", fold_parent, "--out", tmp_path / "plots")
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "plots" / "folds-dice.png").is_file()
    exported = invoke("export", fold_parent, "--format", "torchscript", "--out", tmp_path / "ensemble.pt")
    assert exported.exit_code == 0, exported.output
    scripted = torch.jit.load(str(tmp_path / "ensemble.pt"))
    ensemble = segkit.load_model(fold_parent)
    images = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(scripted(images), ensemble.model(images), atol=1e-4, rtol=1e-4)


def test_the_ensemble_of_copies_of_one_run_predicts_as_that_run(pets_run, tmp_path):
    root, run = pets_run
    parent = tmp_path / "parent"
    parent.mkdir()
    for index in range(3):
        shutil.copytree(run, fold_folder(parent, index))
        (fold_folder(parent, index) / FINISHED_FILE).write_text("{}")
    (parent / FOLDS_FILE).write_text(json.dumps({"folds": 3, "config": {}, "assignment": {}}))
    single, ensemble = segkit.load_model(run), segkit.load_model(parent)
    photo = root / "images" / "cat_1.jpg"
    from PIL import Image

    from segkit.inference.predictor import predict_probability

    image = Image.open(photo).convert("RGB")
    np.testing.assert_allclose(
        predict_probability(ensemble, image, tta=True),
        predict_probability(single, image, tta=True),
        atol=1e-5,
    )
    assert np.array_equal(ensemble.predict(photo), single.predict(photo))


def test_a_half_finished_parent_resumes_only_its_missing_folds(tiny_pets, tmp_path):
    one = invoke(*_fold_args(tiny_pets, tmp_path, "--folds", "3", "--fold", "1"))
    assert one.exit_code == 0, one.output
    parent = only_run_dir(tmp_path)
    assert not (parent / FOLDS_FILE).read_text().count('"out_of_fold"')
    trained_once = (fold_folder(parent, 1) / "best.pt").stat().st_mtime_ns
    marked_once = (fold_folder(parent, 1) / FINISHED_FILE).stat().st_mtime_ns
    missing = run_cli("evaluate", parent, "--split", "test")
    assert missing.exit_code == 2 and "--resume" in missing.output
    # fold 0 trained and stopped before it was marked finished (a crash): resumed, not started again
    first = invoke(*_fold_args(tiny_pets, tmp_path / "other", "--folds", "3", "--fold", "0"))
    assert first.exit_code == 0
    shutil.copytree(fold_folder(only_run_dir(tmp_path / "other"), 0), fold_folder(parent, 0))
    (fold_folder(parent, 0) / FINISHED_FILE).unlink()
    crashed = (fold_folder(parent, 0) / "best.pt").stat().st_mtime_ns
    extended = run_cli("run", "--resume", parent, "--epochs", "5")
    assert extended.exit_code == 2 and "epochs cannot change here" in extended.output
    resumed = invoke("run", "--resume", parent)
    assert resumed.exit_code == 0, resumed.output
    assert (fold_folder(parent, 1) / "best.pt").stat().st_mtime_ns == trained_once  # done: left alone
    assert (fold_folder(parent, 1) / FINISHED_FILE).stat().st_mtime_ns == marked_once
    assert (fold_folder(parent, 0) / "best.pt").stat().st_mtime_ns == crashed  # had trained all it had to
    assert (fold_folder(parent, 2) / "best.pt").is_file()  # missing: trained
    assert all((fold_folder(parent, i) / FINISHED_FILE).is_file() for i in range(3))
    assert "out_of_fold" in json.loads((parent / FOLDS_FILE).read_text())


def test_fold_flags_are_checked(tiny_pets, tmp_path):
    alone = run_cli(*_fold_args(tiny_pets, tmp_path, "--fold", "1"))
    assert alone.exit_code == 2 and "--folds" in alone.output
    outside = run_cli(*_fold_args(tiny_pets, tmp_path, "--folds", "3", "--fold", "3"))
    assert outside.exit_code == 2 and "0 to 2" in outside.output
    none = run_cli(*_fold_args(tiny_pets, tmp_path, "--folds", "0"))
    assert none.exit_code == 2
    one = run_cli(*_fold_args(tiny_pets, tmp_path, "--folds", "1", "--fold", "0"))
    assert one.exit_code == 2 and "K of 2 or more" in one.output
    no_parent = run_cli(*_fold_args(tiny_pets, tmp_path, "--parent", tmp_path / "p"))
    assert no_parent.exit_code == 2 and "--folds" in no_parent.output


def test_jobs_given_one_parent_each_train_their_fold_and_the_last_one_chooses(tiny_pets, tmp_path):
    parent = tmp_path / "cv"
    first = invoke(
        *_fold_args(tiny_pets, tmp_path / "runs", "--folds", "2", "--fold", "1", "--parent", parent)
    )
    assert first.exit_code == 0, first.output
    assert "out_of_fold" not in json.loads((parent / FOLDS_FILE).read_text())
    other_k = run_cli(
        *_fold_args(tiny_pets, tmp_path / "runs", "--folds", "3", "--fold", "0", "--parent", parent)
    )
    assert other_k.exit_code == 2 and "holds 2 folds" in other_k.output
    other_model = run_cli(
        *_fold_args(
            tiny_pets, tmp_path / "runs", "--folds", "2", "--fold", "0", "--parent", parent, "--lr", "0.1"
        )
    )
    assert other_model.exit_code == 2 and "one configuration" in other_model.output
    # this job's own verbosity (as its own --device) holds in the parent the first job made
    args = tiny_run(
        batch_size=6, epochs=1, dataset="oxford_pet", data_path=tiny_pets, augment="none", quiet=False
    )
    second = invoke(
        "run", *args, "--out", tmp_path / "runs", "--folds", "2", "--fold", "0", "--parent", parent
    )
    assert second.exit_code == 0, second.output
    assert "Out of fold" in second.output and "fold 0 of 2: training" in second.output
    assert "out_of_fold" in json.loads((parent / FOLDS_FILE).read_text())
    assert not (tmp_path / "runs").exists()  # nothing under --out: the parent was given


@pytest.mark.slow
def test_folds_side_by_side_train_each_fold_once_in_their_own_processes(tiny_pets, tmp_path):
    from segkit.racing import folds as racing_folds

    first = invoke(*_fold_args(tiny_pets, tmp_path, "--folds", "2", "--fold", "0"))
    assert first.exit_code == 0
    parent = only_run_dir(tmp_path)
    shutil.rmtree(fold_folder(parent, 0))
    record = json.loads((parent / FOLDS_FILE).read_text())
    config = ResolvedConfig(record["config"], record["sources"])
    racing_folds._train_side_by_side(parent, record, config, [0, 1], ["cpu", "cpu"])
    assert racing_folds.finished_folds(parent, 2) == [0, 1]


def test_segkit_train_takes_folds(tiny_pets, tmp_path):
    run = segkit.train(
        model="unet",
        model_options={"base_channels": 4},
        image_size=32,
        batch_size=6,
        epochs=1,
        dataset="oxford_pet",
        data_path=tiny_pets,
        augment="none",
        workers=0,
        device="cpu",
        quiet=True,
        out=tmp_path,
        folds=2,
    )
    assert len(run.folds) == 2 and run.out_of_fold is not None
    assert len(run.out_of_fold["folds"]) == 2
    assert run.predict(tiny_pets / "images" / "cat_0.jpg").shape == (36, 52)


def test_stratification_keeps_rare_photos_apart(monkeypatch):
    # 4 photos holding foreground among 20: each of 4 folds gets one
    strata = {f"train:p{i:02d}": ("foreground" if i < 4 else "none") for i in range(20)}
    assignment = assign_folds(strata, 4, 11)
    assert sorted(assignment[f"train:p{i:02d}"] for i in range(4)) == [0, 1, 2, 3]
    assert folds_module.strata_table(strata, assignment, 4)["foreground"] == [1, 1, 1, 1]


# -- the planner's K ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [0, 4_000, 9_999, 10_000, 50_000])
def test_the_plan_trains_folds_only_when_each_fold_keeps_enough_steps(steps, monkeypatch):
    from segkit.planning import Plan, auto
    from segkit.racing.folds import planned_folds

    monkeypatch.setitem(auto.RULES, "fold_min_steps", 2_000)
    plan = Plan("auto")
    plan.facts["expected_steps"] = steps
    auto._folds(plan, SimpleNamespace(chosen=frozenset(), values={}))
    expected = 5 if steps >= 10_000 else 1
    assert plan.facts["folds"]["folds"] == expected
    assert str(steps // 5) in plan.facts["folds"]["why"]
    config = ResolvedConfig({}, {}, plan=plan)
    assert planned_folds(config, None) == (5 if expected == 5 else None)
    assert planned_folds(config, 1) is None and planned_folds(config, 3) == 3
    assert planned_folds(ResolvedConfig({}, {}), None) is None
    # --epochs given: the steps those epochs hold, not the budget's
    plan.facts["expected_epochs"] = 100
    auto._folds(plan, SimpleNamespace(chosen=frozenset({"epochs"}), values={"epochs": 10}))
    assert plan.facts["folds"]["folds"] == (5 if steps // 10 >= 10_000 else 1)


def test_out_of_fold_predictions_are_the_fold_models_own_at_each_photos_size(fold_parent):
    from segkit.data.splits import evaluation_split
    from segkit.inference.predictor import predict_logits, resize_logits

    trained = segkit.load_model(fold_folder(fold_parent, 1))
    photos = out_of_fold.collect_held_out(trained, 1, quiet=True)
    held_out = json.loads((fold_folder(fold_parent, 1) / "fold.json").read_text())["held_out"]
    assert sorted(photo.name for photo in photos) == sorted(key.split(":")[1] for key in held_out)
    _, data = evaluation_split(trained, "valid", None, None, ())
    item, (truth, _) = data[0], data.original_mask(0)
    assert photos[0].truth.shape == truth.shape  # the photo's own size, not the network's
    for tta in (False, True):
        logits = resize_logits(predict_logits(trained, item["image"][None], tta=tta), truth.shape)
        expected = torch.sigmoid(logits)[0, 0].numpy()
        np.testing.assert_allclose(photos[0].predicted[tta].astype(np.float32), expected, atol=2e-3)


# -- what mutation testing found untested -------------------------------------------------------------


def test_fold_counts_outside_two_to_twenty_are_refused():
    from segkit.data.folds import check_fold_count

    assert check_fold_count(2) == 2 and check_fold_count(20) == 20
    for bad in (1, 21, True, 2.0):
        with pytest.raises(segkit.errors.UsageError, match="from 2 to 20"):
            check_fold_count(bad)


def test_a_fold_record_holds_its_fold_and_nothing_else():
    from segkit.data.folds import fold_record

    assignment = {"train:b": 1, "valid:a": 1, "train:c": 0}
    assert fold_record(assignment, 1, 2, 7) == {
        "index": 1,
        "folds": 2,
        "seed": 7,
        "held_out": ["train:b", "valid:a"],
    }


def test_the_pool_is_train_and_a_valid_split_where_the_dataset_has_one():
    from segkit.data.folds import pooled_splits

    def make(without_valid=False, empty_valid=False):
        def build(split, train):
            if split == "valid" and without_valid:
                raise DataError("no valid split here")
            return MaskSplit([] if split == "valid" and empty_valid else ["x"], [np.zeros((1, 1))])

        return build

    assert [split for split, _ in pooled_splits(make(), True)] == ["train", "valid"]
    assert [split for split, _ in pooled_splits(make(without_valid=True), True)] == ["train"]
    assert [split for split, _ in pooled_splits(make(empty_valid=True), True)] == ["train"]

    def broken(split, train):
        raise DataError("no photos at all")

    with pytest.raises(DataError, match="no photos at all"):
        pooled_splits(broken, True)


class ItemSplit:
    """A generated split: no names list, no masks at their own size, only items."""

    def __init__(self, masks, ignores=None):
        self.masks, self.ignores = masks, ignores
        self.in_memory, self.class_names = True, ["background", "a", "b"]

    def __len__(self):
        return len(self.masks)

    def __getitem__(self, index):
        item = {
            "name": f"g{index}",
            "mask": torch.as_tensor(self.masks[index])[None],
            "image": torch.zeros(3, 2, 2),
        }
        if self.ignores is not None:
            item["ignore"] = torch.as_tensor(self.ignores[index])[None]
        return item


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from(["binary", "multiclass", "multilabel"]), st.booleans())
def test_the_classes_a_photo_holds_against_numpy(seed, kind, with_ignore):
    rng = np.random.default_rng(seed)
    if kind == "multilabel":
        mask = (rng.random((3, 5, 6)) < rng.random(3)[:, None, None]).astype(np.uint8)
    elif kind == "multiclass":
        mask = rng.choice([0, 1, 2, 255], size=(5, 6), p=rng.dirichlet(np.ones(4))).astype(np.int64)
    else:
        mask = (rng.random((5, 6)) < rng.random() * 0.2).astype(np.uint8)
    ignore = (rng.random(mask.shape) < 0.5) if with_ignore else None
    counted = np.ones(mask.shape, bool) if ignore is None else ~ignore
    if kind == "multiclass":
        expected = {int(v) for v in np.unique(mask[counted])} - {0, 255}
    elif kind == "multilabel":
        expected = {c for c in range(3) if (mask[c].astype(bool) & counted[c]).any()}
    else:
        expected = {1} if (mask.astype(bool) & counted).any() else set()
    on_disk = SimpleNamespace(original_mask=lambda index: (mask, ignore))
    assert folds_module._labels_present(on_disk, 0, kind) == expected
    # a generated split's items: (1, H, W) masks, (K, H, W) for multilabel
    item_mask = torch.as_tensor(mask if kind == "multilabel" else mask[None])
    item = {"mask": item_mask}
    if ignore is not None:
        item["ignore"] = torch.as_tensor(ignore if kind == "multilabel" else ignore[None])
    assert folds_module._labels_present(_Items(item), 0, kind) == expected


class _Items:
    def __init__(self, item):
        self.item = item

    def __getitem__(self, index):
        return self.item


def test_a_generated_split_is_known_by_its_items_names_and_picked_from_its_parts():
    first, second = ItemSplit([np.zeros((2, 2))] * 2), ItemSplit([np.ones((2, 2))] * 3)
    assert folds_module.split_names(second) == ["g0", "g1", "g2"]
    subset = FoldSubset([(first, 1), (second, 2)], ["train:g1", "valid:g2"])
    assert len(subset) == 2 and subset.names == ["train:g1", "valid:g2"]
    assert torch.equal(subset[1]["mask"], second[2]["mask"]) and subset[0]["name"] == "g1"
    assert subset.in_memory is True and subset.class_names == ["background", "a", "b"]  # the first split's
    assert not hasattr(subset, "original_mask")  # as its splits: they have none
    with pytest.raises(AttributeError):
        _ = subset.no_such_attribute


def _holes_and_specks(size=20):
    mask = np.zeros((size, size), bool)
    mask[2:9, 2:9] = True
    mask[5, 5] = False  # a hole
    mask[15:17, 15:17] = True  # a second, smaller component
    return mask


@pytest.mark.parametrize("fill", [False, True])
@pytest.mark.parametrize("largest", [False, True])
def test_multilabel_clean_up_is_each_listed_labels_binary_clean_up(fill, largest):
    from scipy import ndimage

    from segkit.inference.postprocess import postprocess_classes

    masks = np.stack([_holes_and_specks(), _holes_and_specks().T])
    steps = {"fill_holes": [1] if fill else [], "keep_largest": [1] if largest else []}
    cleaned = postprocess_classes(masks, "multilabel", steps)
    assert np.array_equal(cleaned[0], masks[0])  # label 0 not listed: untouched
    expected = masks[1]
    if fill:
        expected = ndimage.binary_fill_holes(expected)
    if largest:
        labels, _ = ndimage.label(expected, structure=np.ones((3, 3)))
        expected = labels == np.bincount(labels.ravel())[1:].argmax() + 1
    assert np.array_equal(cleaned[1], expected)
    assert np.array_equal(postprocess_classes(masks, "binary", steps), masks)  # binary masks: not here


def test_multiclass_hole_filling_gives_the_hole_to_the_class_around_it():
    from segkit.inference.postprocess import postprocess_classes

    ids = np.where(_holes_and_specks(), 2, 0)
    ids[5, 5] = 1  # another class inside class 2
    filled = postprocess_classes(ids, "multiclass", {"fill_holes": [2], "keep_largest": []})
    assert filled[5, 5] == 2 and (filled[15:17, 15:17] == 2).all()
    largest = postprocess_classes(ids, "multiclass", {"fill_holes": [], "keep_largest": [2]})
    assert (largest[15:17, 15:17] == 0).all() and largest[5, 5] == 1 and (largest[2:5, 2:9] == 2).all()
    untouched = postprocess_classes(ids, "multiclass", {"fill_holes": [1], "keep_largest": [1]})
    assert np.array_equal(untouched, ids)  # class 1 is one pixel: nothing to fill or drop


def test_flip_tta_is_kept_when_the_flipped_predictions_are_better_and_recorded_as_such():
    rng = np.random.default_rng(2)
    photos = []
    for index in range(10):
        truth = _disc()
        plain = np.where(truth, 0.9, 0.1) + rng.normal(0, 0.01, truth.shape)
        plain[4:6, 4:20] = 0.05  # a band the plain pass misses; the flipped pass sees it
        flipped = np.where(truth, 0.9, 0.1)
        photos.append(
            HeldOut(
                f"p{index}",
                0,
                {False: plain.astype(np.float16), True: flipped.astype(np.float16)},
                truth.astype(np.uint8),
                None,
            )
        )
    settings_, choices = choose(photos, "binary", ["foreground"], [0])
    first = choices[0].record()
    assert (first["step"], first["target"], first["value"], first["kept"]) == ("tta", "all", True, True)
    assert first["with"] > first["without"] and settings_.tta
    assert settings_.inference("binary") == {
        "tta": True,
        "threshold": settings_.threshold,
        "fill_holes": settings_.fill_holes,
        "keep_largest": settings_.keep_largest,
    }


def test_what_a_multi_class_or_multi_label_ensemble_is_told_to_apply():
    settings_ = out_of_fold.Settings(
        tta=True, label_thresholds=[0.3, 0.6], class_steps={"fill_holes": [2, 1], "keep_largest": [1]}
    )
    assert settings_.inference("multiclass") == {
        "tta": True,
        "class_fill_holes": [1, 2],
        "class_keep_largest": [1],
    }
    assert settings_.inference("multilabel") == {
        "tta": True,
        "label_thresholds": [0.3, 0.6],
        "class_fill_holes": [1, 2],
        "class_keep_largest": [1],
    }
    ids = np.array([[0, 1], [2, 1]], np.uint8)
    photo = HeldOut("p", 0, {False: ids, True: ids}, ids, None)
    assert np.array_equal(out_of_fold.mask_of(photo, "multiclass", out_of_fold.Settings()), ids)
    maps = np.array([[[0.2, 0.4]], [[0.5, 0.7]]], np.float16)
    labels = HeldOut("q", 0, {False: maps, True: maps}, maps > 0.5, None)
    plain = out_of_fold.mask_of(labels, "multilabel", out_of_fold.Settings())
    assert plain.tolist() == [[[False, False]], [[False, True]]]  # 0.5 is not above 0.5
    shifted = out_of_fold.mask_of(labels, "multilabel", out_of_fold.Settings(label_thresholds=[0.3, 0.6]))
    assert shifted.tolist() == [[[False, True]], [[False, True]]]


def test_the_pooled_score_is_the_mean_iou_of_the_summed_counts():
    # per photo and class: intersection, predicted, true pixels
    counts = np.array([[[5, 6, 7], [0, 0, 0], [1, 4, 2]], [[3, 3, 5], [0, 0, 0], [0, 2, 0]]])
    intersection, predicted, true = counts.sum(axis=0).T.astype(float)
    iou = intersection / (predicted + true - intersection)
    assert out_of_fold.pooled_score(counts, "multiclass", [0, 2]) == pytest.approx((iou[0] + iou[2]) / 2)
    assert out_of_fold.pooled_score(counts, "multiclass", [0, 1, 2]) == pytest.approx((iou[0] + iou[2]) / 2)
    assert math.isnan(out_of_fold.pooled_score(counts, "multiclass", [1]))  # absent everywhere: no score
