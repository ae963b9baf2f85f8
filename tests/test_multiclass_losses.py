"""Losses for multi-class and multi-label segmentation, checked against independent numpy references.

Multiclass losses (plugins/segkit_builtin/multiclass_losses.py) take ``(N, K, H, W)`` logits and an
``(N, H, W)`` int64 class-index target in which 255 (``ignore_index``) marks pixels that count for
nothing. Multilabel use of the binary losses takes ``(N, C, H, W)`` targets; ``per_channel`` scores
each channel on its own. ``segkit.testing.check_loss`` is binary-shaped, so the multiclass losses'
basic contract is checked here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import segkit
from segkit.api import list_components
from segkit.errors import DataError, UsageError
from segkit.losses import DEFAULT_LOSS_TASKS, MulticlassLoss, check_loss_task, losses_for_task
from segkit.testing import check_loss

MULTICLASS_LOSSES = ("ce", "softmax_dice", "ce_dice", "multiclass_focal", "multiclass_tversky")
BINARY_LOSSES = ("bce", "dice", "tversky", "focal", "bce_dice", "bce_tversky")
IGNORE = 255
PROPERTY = settings(max_examples=30, deadline=None)


# --- strategies ------


@st.composite
def multiclass_batches(draw, logit_bound: float = 20.0, min_classes: int = 1):
    """(logits float64 (N, K, H, W), target int64 (N, H, W) with some 255s, K)."""
    classes = draw(st.integers(min_classes, 4))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    logits = draw(
        hnp.arrays(np.float32, (n, classes, h, w), elements=st.floats(-logit_bound, logit_bound, width=32))
    ).astype(np.float64)
    # Drawing K stands for the ignore value.
    target = draw(hnp.arrays(np.int64, (n, h, w), elements=st.integers(0, classes)))
    target[target == classes] = IGNORE
    return logits, target, classes


def class_weight_lists(classes):
    return st.one_of(st.none(), st.lists(st.floats(0.1, 3.0), min_size=classes, max_size=classes))


@st.composite
def multilabel_batches(draw, logit_bound: float = 20.0):
    """(logits, target, ignore) of one (N, C, H, W) shape, float64 / float64 {0, 1} / bool."""
    shape = (
        draw(st.integers(1, 2)),
        draw(st.integers(1, 4)),
        draw(st.integers(1, 6)),
        draw(st.integers(1, 6)),
    )
    logits = draw(
        hnp.arrays(np.float32, shape, elements=st.floats(-logit_bound, logit_bound, width=32))
    ).astype(np.float64)
    target = draw(hnp.arrays(np.bool_, shape)).astype(np.float64)
    ignore = draw(hnp.arrays(np.bool_, shape)) if draw(st.booleans()) else np.zeros(shape, dtype=bool)
    return logits, target, ignore


smooths = st.floats(0.01, 10.0)


def mc_tensors(logits, target, dtype=torch.float32):
    return torch.tensor(logits, dtype=dtype, requires_grad=True), torch.tensor(target, dtype=torch.int64)


def ml_tensors(logits, target, ignore, dtype=torch.float32):
    return (
        torch.tensor(logits, dtype=dtype, requires_grad=True),
        torch.tensor(target, dtype=dtype),
        torch.tensor(ignore, dtype=torch.bool),
    )


# --- independent numpy references ------


def np_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def np_log_softmax(x):
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_one_hot(y, classes, valid):
    return ((y[:, None] == np.arange(classes)[None, :, None, None]) & valid[:, None]).astype(np.float64)


def np_weights(weights, classes):
    return np.ones(classes) if weights is None else np.asarray(weights, dtype=np.float64)


def ref_ce(x, y, classes, weights=None, ignore_index=IGNORE):
    # torch's weighted-mean convention: sum(w[y] * nll) / sum(w[y]) over valid pixels.
    valid = y != ignore_index
    safe = np.where(valid, y, 0)
    nll = -np.take_along_axis(np_log_softmax(x), safe[:, None], axis=1)[:, 0]
    pixel_weight = np_weights(weights, classes)[safe] * valid
    total = pixel_weight.sum()
    return (pixel_weight * nll).sum() / total if total > 0 else 0.0


def _class_stats(x, y, classes, per_image, ignore_index=IGNORE):
    valid = y != ignore_index
    p = np_softmax(x) * valid[:, None]
    t = np_one_hot(y, classes, valid)
    axes = (2, 3) if per_image else (0, 2, 3)
    tp = (p * t).sum(axis=axes)
    fp = (p * (1 - t)).sum(axis=axes)
    fn = ((1 - p) * t * valid[:, None]).sum(axis=axes)
    return p.sum(axis=axes), t.sum(axis=axes), tp, fp, fn


def _class_average(scores, weights, classes, per_image):
    per_class = scores.mean(axis=0) if per_image else scores
    w = np_weights(weights, classes)
    return (w * per_class).sum() / w.sum()


def ref_softmax_dice(x, y, classes, smooth=1.0, per_image=False, weights=None):
    p_sum, t_sum, tp, _, _ = _class_stats(x, y, classes, per_image)
    dice = (2 * tp + smooth) / (p_sum + t_sum + smooth)
    return 1 - _class_average(dice, weights, classes, per_image)


def ref_multiclass_tversky(x, y, classes, alpha, beta, smooth=1.0, per_image=False, weights=None):
    # Salehi et al.'s TP / (TP + alpha FP + beta FN), smoothed with s / 2 like the binary one.
    _, _, tp, fp, fn = _class_stats(x, y, classes, per_image)
    index = (tp + smooth / 2) / (tp + alpha * fp + beta * fn + smooth / 2)
    return 1 - _class_average(index, weights, classes, per_image)


def ref_multiclass_focal(x, y, classes, gamma, weights=None):
    valid = y != IGNORE
    safe = np.where(valid, y, 0)
    log_p_t = np.take_along_axis(np_log_softmax(x), safe[:, None], axis=1)[:, 0]
    alpha_t = np_weights(weights, classes)[safe]
    per_pixel = -alpha_t * (1 - np.exp(log_p_t)) ** gamma * log_p_t
    return (per_pixel * valid).sum() / max(valid.sum(), 1)


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def ref_binary_dice(x, t, valid, smooth, per_image):
    p = np_sigmoid(x) * valid
    t = t * valid
    axes = tuple(range(1, x.ndim)) if per_image else None
    intersection = np.atleast_1d((p * t).sum(axis=axes))
    total = np.atleast_1d(p.sum(axis=axes) + t.sum(axis=axes))
    return 1 - np.mean((2 * intersection + smooth) / (total + smooth))


def ref_weighted_bce(x, t, valid, weights):
    log_sig = -np.logaddexp(0.0, -x)
    log_sig_neg = -np.logaddexp(0.0, x)
    per_pixel = -(t * log_sig + (1 - t) * log_sig_neg) * np.asarray(weights)[None, :, None, None]
    return per_pixel[valid].sum() / max(valid.sum(), 1)


# --- registration, metadata and the task check ------


def test_multiclass_losses_are_registered_for_multiclass_tasks_only():
    components = {component.name: component for component in list_components("loss")}
    for name in MULTICLASS_LOSSES:
        assert name in components, f"loss {name!r} not registered"
        assert components[name].metadata["tasks"] == ("multiclass",)
        description = components[name].description
        assert description and "\n" not in description and len(description) <= 100
    for name in BINARY_LOSSES:
        assert components[name].metadata["tasks"] == ("binary", "multilabel")


def test_check_loss_task_names_the_losses_that_fit():
    bce_dice = segkit.get_component("loss", "bce_dice")
    with pytest.raises(UsageError) as error:
        check_loss_task("bce_dice", bce_dice.metadata, "multiclass")
    assert str(error.value) == (
        "loss 'bce_dice' is for binary and multilabel tasks; for a multiclass task use one of: "
        "ce, ce_dice, multiclass_focal, multiclass_tversky, softmax_dice"
    )
    check_loss_task("bce_dice", bce_dice.metadata, "binary")
    check_loss_task("bce_dice", bce_dice.metadata, "multilabel")
    ce = segkit.get_component("loss", "ce")
    check_loss_task("ce", ce.metadata, "multiclass")
    with pytest.raises(
        UsageError, match=r"^loss 'ce' is for multiclass tasks; for a binary task use one of: "
    ):
        check_loss_task("ce", ce.metadata, "binary")
    assert "\n" not in str(pytest.raises(UsageError, check_loss_task, "ce", ce.metadata, "multilabel").value)


def test_a_loss_registered_without_tasks_is_binary_and_multilabel():
    assert DEFAULT_LOSS_TASKS == ("binary", "multilabel")
    check_loss_task("mine", {}, "binary")
    check_loss_task("mine", {"options": {}}, "multilabel")
    with pytest.raises(UsageError, match="'mine' is for binary and multilabel tasks"):
        check_loss_task("mine", {}, "multiclass")
    assert set(MULTICLASS_LOSSES) <= set(losses_for_task("multiclass"))
    assert not set(MULTICLASS_LOSSES) & set(losses_for_task("binary"))
    assert set(BINARY_LOSSES) <= set(losses_for_task("multilabel"))


@pytest.mark.parametrize(
    "name",
    [c.name for c in list_components("loss") if "binary" in c.metadata.get("tasks", DEFAULT_LOSS_TASKS)],
)
def test_every_binary_loss_passes_the_conformance_kit(name):
    check_loss(name)
    if name in ("dice", "tversky", "bce_dice", "bce_tversky"):
        check_loss(name, {"per_channel": True})


@pytest.mark.parametrize(
    "name",
    [c.name for c in list_components("loss") if "multiclass" in c.metadata.get("tasks", DEFAULT_LOSS_TASKS)],
)
@pytest.mark.parametrize("per_image", [False, True])
def test_every_multiclass_loss_keeps_the_basic_contract(name, per_image):
    """check_loss is binary-shaped: the same contract, for (N, K, H, W) logits and (N, H, W) indices."""
    takes_per_image = "per_image" in segkit.get_component("loss", name).metadata["options"]
    loss_fn = segkit.create_loss(name, **({"per_image": per_image} if takes_per_image else {}))
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 16, 20), generator=generator)
    target[0, :2] = IGNORE
    logits = torch.randn(2, 3, 16, 20, generator=generator, requires_grad=True)
    value = loss_fn(logits, target)
    assert isinstance(value, torch.Tensor) and value.dim() == 0 and value.dtype == torch.float32
    assert torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    one_hot = torch.nn.functional.one_hot(target.clamp_max(2), 3).permute(0, 3, 1, 2).float()
    for scale in (1.0, 100.0):
        good = loss_fn((one_hot * 2 - 1) * 10 * scale, target)
        bad = loss_fn((1 - one_hot * 2) * 10 * scale, target)
        assert torch.isfinite(good) and torch.isfinite(bad)
        assert good < bad
        assert good.item() == pytest.approx(0.0, abs=1e-4)
    # A (N, 1, H, W) index target (a batch of (1, H, W) masks) is accepted too.
    torch.testing.assert_close(loss_fn(logits, target[:, None]), loss_fn(logits, target))


def test_multiclass_losses_are_multiclass_loss_modules():
    for name in MULTICLASS_LOSSES:
        assert isinstance(segkit.create_loss(name), MulticlassLoss)


# --- values against numpy ------


@PROPERTY
@given(batch=multiclass_batches(), data=st.data())
def test_cross_entropy_matches_numpy(batch, data):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    value = segkit.create_loss("ce", class_weights=weights)(*mc_tensors(logits, target, torch.float64))
    assert value.dtype == torch.float32 and value.dim() == 0
    assert value.item() == pytest.approx(ref_ce(logits, target, classes, weights), rel=1e-4, abs=1e-5)


@PROPERTY
@given(batch=multiclass_batches(), data=st.data(), smooth=smooths, per_image=st.booleans())
def test_softmax_dice_matches_numpy(batch, data, smooth, per_image):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    loss_fn = segkit.create_loss("softmax_dice", smooth=smooth, per_image=per_image, class_weights=weights)
    value = loss_fn(*mc_tensors(logits, target))
    expected = ref_softmax_dice(logits, target, classes, smooth, per_image, weights)
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(batch=multiclass_batches(), data=st.data(), smooth=smooths, per_image=st.booleans())
def test_ce_dice_is_the_weighted_sum_of_its_terms(batch, data, smooth, per_image):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    ce_weight, dice_weight = data.draw(st.floats(0.0, 3.0)), data.draw(st.floats(0.1, 3.0))
    loss_fn = segkit.create_loss(
        "ce_dice",
        ce_weight=ce_weight,
        dice_weight=dice_weight,
        smooth=smooth,
        per_image=per_image,
        class_weights=weights,
    )
    expected = ce_weight * ref_ce(logits, target, classes, weights) + dice_weight * ref_softmax_dice(
        logits, target, classes, smooth, per_image, weights
    )
    assert loss_fn(*mc_tensors(logits, target)).item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(batch=multiclass_batches(), data=st.data(), gamma=st.floats(0.0, 4.0))
def test_multiclass_focal_matches_numpy(batch, data, gamma):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    value = segkit.create_loss("multiclass_focal", gamma=gamma, class_weights=weights)(
        *mc_tensors(logits, target, torch.float64)
    )
    expected = ref_multiclass_focal(logits, target, classes, gamma, weights)
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(
    batch=multiclass_batches(),
    data=st.data(),
    alpha=st.floats(0.0, 1.0),
    beta=st.floats(0.05, 1.0),
    smooth=smooths,
    per_image=st.booleans(),
)
def test_multiclass_tversky_matches_numpy(batch, data, alpha, beta, smooth, per_image):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    loss_fn = segkit.create_loss(
        "multiclass_tversky",
        alpha=alpha,
        beta=beta,
        smooth=smooth,
        per_image=per_image,
        class_weights=weights,
    )
    expected = ref_multiclass_tversky(logits, target, classes, alpha, beta, smooth, per_image, weights)
    assert loss_fn(*mc_tensors(logits, target)).item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(batch=multiclass_batches(), data=st.data(), smooth=smooths, per_image=st.booleans())
def test_multiclass_tversky_with_equal_half_weights_is_softmax_dice(batch, data, smooth, per_image):
    logits, target, classes = batch
    weights = data.draw(class_weight_lists(classes), label="class_weights")
    options = {"smooth": smooth, "per_image": per_image, "class_weights": weights}
    x, y = mc_tensors(logits, target)
    dice = segkit.create_loss("softmax_dice", **options)(x, y)
    tversky = segkit.create_loss("multiclass_tversky", alpha=0.5, beta=0.5, **options)(x, y)
    torch.testing.assert_close(tversky, dice, rtol=1e-5, atol=1e-6)


def test_a_class_absent_from_truth_and_prediction_scores_dice_one():
    # Class 2 is neither in the target nor predicted (its logit is very low): its Dice is 1 by smoothing.
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.full((1, 3, 2, 2), -1e4)
    logits[:, 0] = torch.where(target == 0, 1e4, -1e4)
    logits[:, 1] = torch.where(target == 1, 1e4, -1e4)
    assert segkit.create_loss("softmax_dice")(logits, target).item() == pytest.approx(0.0, abs=1e-6)


@PROPERTY
@given(batch=multiclass_batches(min_classes=2), data=st.data())
def test_ignore_index_option_ignores_that_value(batch, data):
    logits, target, classes = batch
    ignored_class = data.draw(st.integers(0, classes - 1), label="ignore_index")
    # With another ignore_index, 255 is a class out of range: use only real classes here.
    target = np.where(target == IGNORE, ignored_class, target)
    as_ignored = np.where(target == ignored_class, IGNORE, target)
    x, y = mc_tensors(logits, target)
    for name in MULTICLASS_LOSSES:
        value = segkit.create_loss(name, ignore_index=ignored_class)(x, y)
        # Ignored pixels count for nothing; the class keeps its channel (a Dice term of empty truth).
        reference = segkit.create_loss(name)(x, torch.tensor(as_ignored))
        torch.testing.assert_close(value, reference)


# --- ignored pixels ------


junk_logits = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([1e30, -1e30, float("nan")])
)


def _loss_options(name, data):
    options = {"class_weights": None}
    if name in ("softmax_dice", "ce_dice", "multiclass_tversky"):
        options["per_image"] = data.draw(st.booleans(), label="per_image")
    if name == "multiclass_tversky":
        options["alpha"], options["beta"] = 0.3, 0.7
    if name == "multiclass_focal":
        options["gamma"] = data.draw(st.sampled_from([0.0, 0.5, 2.0]), label="gamma")
    return options


@PROPERTY
@given(name=st.sampled_from(MULTICLASS_LOSSES), batch=multiclass_batches(), data=st.data())
def test_ignored_pixels_change_neither_value_nor_gradient(name, batch, data):
    logits, target, classes = batch
    loss_fn = segkit.create_loss(name, **_loss_options(name, data))
    shape = logits.shape
    # Pixels whose target is 255: any logits there (NaN included).
    at_255 = np.broadcast_to((target == IGNORE)[:, None], shape)
    junk = data.draw(hnp.arrays(np.float64, shape, elements=junk_logits), label="junk logits")
    first, second = mc_tensors(logits, target), mc_tensors(np.where(at_255, junk, logits), target)
    # Pixels flagged by a bool ``ignore``: any logits and any target values there (out of range too).
    flagged = data.draw(hnp.arrays(np.bool_, target.shape), label="ignore")
    junk_target = data.draw(
        hnp.arrays(np.int64, target.shape, elements=st.sampled_from([0, classes - 1, 7, -3, IGNORE])),
        label="junk target",
    )
    third = mc_tensors(logits, target)
    fourth = mc_tensors(
        np.where(np.broadcast_to(flagged[:, None], shape), junk, logits),
        np.where(flagged, junk_target, target),
    )
    ignore = torch.tensor(flagged)
    values = [loss_fn(*first), loss_fn(*second), loss_fn(*third, ignore), loss_fn(*fourth, ignore)]
    for value in values:
        value.backward()
    assert torch.equal(values[0], values[1]) and torch.equal(values[2], values[3])
    assert torch.isfinite(values[1]) and torch.isfinite(values[3])
    assert torch.equal(first[0].grad, second[0].grad)
    assert torch.equal(third[0].grad, fourth[0].grad)
    assert (second[0].grad[torch.tensor(at_255.copy())] == 0).all()
    assert (fourth[0].grad[ignore[:, None].expand(shape)] == 0).all()


def test_all_ignored_batch_gives_zero_loss_with_a_graph():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    target = torch.full((2, 4, 4), IGNORE)
    for name in MULTICLASS_LOSSES:
        value = segkit.create_loss(name, class_weights=[1, 2, 3])(logits, target)
        assert torch.isfinite(value)
        value.backward()
        assert torch.isfinite(logits.grad).all()
    assert segkit.create_loss("ce")(logits, target).item() == 0.0
    assert segkit.create_loss("multiclass_focal")(logits, target).item() == 0.0


# --- extreme logits and mixed precision ------


@settings(max_examples=20, deadline=None)
@given(
    name=st.sampled_from(MULTICLASS_LOSSES),
    batch=multiclass_batches(),
    data=st.data(),
    dtype=st.sampled_from(["fp32", "bf16"]),
)
def test_extreme_logits_give_finite_values_and_gradients(name, batch, data, dtype):
    _, target, classes = batch
    options = _loss_options(name, data)
    options["class_weights"] = data.draw(class_weight_lists(classes), label="class_weights")
    loss_fn = segkit.create_loss(name, **options)
    signs = np.where(
        np.random.default_rng(target.size).random((target.shape[0], classes, *target.shape[1:])) < 0.5,
        -1.0,
        1.0,
    )
    for magnitude in (100.0, 1e4):
        if dtype == "fp32":
            x, y = mc_tensors(signs * magnitude, target)
            value = loss_fn(x, y)
        else:
            x, y = mc_tensors(signs * magnitude, target, dtype=torch.bfloat16)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                value = loss_fn(x, y)
        assert value.dtype == torch.float32
        assert torch.isfinite(value), f"{name} {options} not finite for logits of {magnitude} in {dtype}"
        value.backward()
        assert torch.isfinite(x.grad).all()


def test_autocast_value_matches_float32():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=generator) * 4
    target = torch.randint(0, 3, (2, 8, 8), generator=generator)
    for name in MULTICLASS_LOSSES:
        loss_fn = segkit.create_loss(name)
        exact = loss_fn(logits.bfloat16().float(), target)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = loss_fn(logits.bfloat16(), target)
        torch.testing.assert_close(mixed, exact, rtol=1e-6, atol=1e-6)


# --- bad input and options ------


@pytest.mark.parametrize("name", MULTICLASS_LOSSES)
def test_class_weights_of_the_wrong_length_name_the_option_its_length_and_k(name):
    loss_fn = segkit.create_loss(name, class_weights=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(UsageError) as error:
        loss_fn(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64))
    message = str(error.value)
    assert "'class_weights'" in message and "4 values" in message and "K = 3" in message
    assert repr(name) in message and "\n" not in message


@pytest.mark.parametrize("name", MULTICLASS_LOSSES)
def test_target_values_outside_the_classes_are_data_errors(name):
    loss_fn = segkit.create_loss(name)
    target = torch.zeros(1, 4, 4, dtype=torch.int64)
    target[0, 1, 2] = 7
    target[0, 0, 0] = IGNORE
    with pytest.raises(DataError, match=r"\b7\b") as error:
        loss_fn(torch.zeros(1, 3, 4, 4), target)
    assert "[0, 3)" in str(error.value)
    target[0, 1, 2] = -1
    with pytest.raises(DataError, match="-1"):
        loss_fn(torch.zeros(1, 3, 4, 4), target)


@pytest.mark.parametrize("name", MULTICLASS_LOSSES)
def test_malformed_multiclass_inputs_are_data_errors(name):
    loss_fn = segkit.create_loss(name)
    logits = torch.zeros(2, 3, 4, 4)
    with pytest.raises(DataError, match="integer"):
        loss_fn(logits, torch.zeros(2, 4, 4))  # a float target
    with pytest.raises(DataError, match="shape"):
        loss_fn(logits, torch.zeros(2, 5, 4, dtype=torch.int64))
    with pytest.raises(DataError, match="shape"):
        loss_fn(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.int64))
    with pytest.raises(DataError, match="ignore"):
        loss_fn(logits, torch.zeros(2, 4, 4, dtype=torch.int64), torch.zeros(2, 4, 4))
    with pytest.raises(DataError, match="tensors"):
        loss_fn(logits.numpy(), torch.zeros(2, 4, 4, dtype=torch.int64))


@pytest.mark.parametrize(
    ("name", "options", "option", "allowed"),
    [
        ("ce", {"class_weights": [1, -1]}, "class_weights", "list of numbers"),
        ("ce", {"class_weights": [0, 0]}, "class_weights", "not all 0"),
        ("ce", {"class_weights": []}, "class_weights", "list of numbers"),
        ("ce", {"class_weights": 3}, "class_weights", "list of numbers"),
        ("softmax_dice", {"class_weights": ["a"]}, "class_weights", "list of numbers"),
        ("ce", {"ignore_index": 2.5}, "ignore_index", "integer"),
        ("softmax_dice", {"smooth": 0}, "smooth", "> 0"),
        ("multiclass_focal", {"gamma": -1}, "gamma", ">= 0"),
        ("multiclass_tversky", {"alpha": 0, "beta": 0}, "alpha", "both be 0"),
        ("ce_dice", {"ce_weight": 0, "dice_weight": 0}, "dice_weight", "both be 0"),
        ("bce", {"class_weights": [1, -2]}, "class_weights", "list of numbers"),
        ("dice", {"per_channel": "maybe"}, "per_channel", "true or false"),
    ],
)
def test_invalid_option_values_name_the_option_and_allowed_values(name, options, option, allowed):
    with pytest.raises(UsageError) as error:
        segkit.create_loss(name, **options)
    message = str(error.value)
    assert f"'{option}'" in message and allowed in message and name in message


def test_class_weights_given_as_text_are_parsed():
    assert segkit.create_loss("ce", class_weights="[1, 2.5, 0]").class_weights == (1.0, 2.5, 0.0)
    assert segkit.create_loss("ce", class_weights="1,2").class_weights == (1.0, 2.0)
    assert segkit.create_loss("ce", class_weights="none").class_weights is None
    assert segkit.create_loss("ce", class_weights=(1, 2)).class_weights == (1.0, 2.0)
    assert segkit.create_loss("ce").ignore_index == 255


# --- multilabel: per_channel and class_weights on the binary losses ------


@PROPERTY
@given(
    batch=multilabel_batches(),
    name=st.sampled_from(["dice", "tversky", "bce_dice", "bce_tversky"]),
    smooth=smooths,
    per_image=st.booleans(),
)
def test_per_channel_is_the_mean_over_channels_of_single_channel_scores(batch, name, smooth, per_image):
    logits, target, ignore = batch
    options = {"smooth": smooth, "per_image": per_image}
    if "tversky" in name:
        options.update(alpha=0.3, beta=0.7)
    x, t, i = ml_tensors(logits, target, ignore)
    value = segkit.create_loss(name, per_channel=True, **options)(x, t, i)
    channels = logits.shape[1]
    overlap_name = "tversky" if "tversky" in name else "dice"
    overlap_options = {key: value for key, value in options.items()}
    per_channel = [
        segkit.create_loss(overlap_name, **overlap_options)(x[:, c : c + 1], t[:, c : c + 1], i[:, c : c + 1])
        for c in range(channels)
    ]
    expected = torch.stack(per_channel).mean()
    if name.startswith("bce_"):
        expected = expected + segkit.create_loss("bce")(x, t, i)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(batch=multilabel_batches(), smooth=smooths, per_image=st.booleans())
def test_per_channel_dice_matches_numpy(batch, smooth, per_image):
    logits, target, ignore = batch
    valid = ~ignore
    expected = np.mean(
        [
            ref_binary_dice(
                logits[:, c : c + 1], target[:, c : c + 1], valid[:, c : c + 1], smooth, per_image
            )
            for c in range(logits.shape[1])
        ]
    )
    value = segkit.create_loss("dice", smooth=smooth, per_image=per_image, per_channel=True)(
        *ml_tensors(logits, target, ignore, torch.float64)
    )
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(
    batch=multilabel_batches(),
    name=st.sampled_from(["dice", "tversky", "bce_dice", "bce_tversky"]),
    per_image=st.booleans(),
)
def test_one_channel_with_per_channel_equals_the_binary_value(batch, name, per_image):
    logits, target, ignore = batch
    x, t, i = ml_tensors(logits[:, :1], target[:, :1], ignore[:, :1])
    old = segkit.create_loss(name, per_image=per_image)(x, t, i)
    new = segkit.create_loss(name, per_image=per_image, per_channel=True)(x, t, i)
    torch.testing.assert_close(new, old, rtol=1e-6, atol=1e-7)


@PROPERTY
@given(batch=multilabel_batches(), data=st.data(), name=st.sampled_from(["bce", "bce_dice", "bce_tversky"]))
def test_bce_class_weights_weigh_each_channel(batch, data, name):
    logits, target, ignore = batch
    channels = logits.shape[1]
    weights = data.draw(st.lists(st.floats(0.0, 3.0), min_size=channels, max_size=channels), label="weights")
    if not any(weights):
        weights[0] = 1.0
    x, t, i = ml_tensors(logits, target, ignore, torch.float64)
    value = segkit.create_loss(name, class_weights=weights)(x, t, i)
    expected = ref_weighted_bce(logits, target, ~ignore, weights)
    if name != "bce":
        expected += segkit.create_loss(name, bce_weight=0)(x, t, i).item()
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    # Weights of 1 are exactly no weights.
    ones = segkit.create_loss(name, class_weights=[1.0] * channels)(x, t, i)
    torch.testing.assert_close(ones, segkit.create_loss(name)(x, t, i), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", ["bce", "bce_dice", "bce_tversky"])
def test_bce_class_weights_of_the_wrong_length_are_usage_errors(name):
    loss_fn = segkit.create_loss(name, class_weights=[1.0, 2.0])
    with pytest.raises(UsageError) as error:
        loss_fn(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    message = str(error.value)
    assert "'class_weights'" in message and "2 values" in message and "3 channels" in message


def test_defaults_keep_the_binary_behaviour():
    for name in ("dice", "tversky"):
        assert segkit.create_loss(name).per_channel is False
    assert segkit.create_loss("bce").class_weights is None
    assert segkit.create_loss("bce_dice").terms["dice"].per_channel is False


# --- gaps found by mutation testing (MUTATION.md) ------


def test_multiclass_loss_classes_default_to_their_documented_values():
    from segkit_builtin.multiclass_losses import MulticlassFocalLoss, MulticlassTverskyLoss, SoftmaxDiceLoss

    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 4, generator=generator) * 2
    target = torch.randint(0, 3, (2, 4, 4), generator=generator)
    target[0] = 0  # one image without classes 1 and 2: per_image changes the value

    def same(a, b):
        return float(a(logits, target)) == pytest.approx(float(b(logits, target)), abs=1e-7)

    assert same(MulticlassTverskyLoss(), MulticlassTverskyLoss(0.5, 0.5, 1.0, False))
    for changed in (
        (1.5, 0.5, 1.0, False),
        (0.5, 1.5, 1.0, False),
        (0.5, 0.5, 2.0, False),
        (0.5, 0.5, 1.0, True),
    ):
        assert not same(MulticlassTverskyLoss(), MulticlassTverskyLoss(*changed)), changed
    assert same(MulticlassTverskyLoss(), SoftmaxDiceLoss())
    assert same(MulticlassFocalLoss(), MulticlassFocalLoss(gamma=2.0))
    assert not same(MulticlassFocalLoss(), MulticlassFocalLoss(gamma=3.0))


def test_ce_dice_names_its_terms_and_refuses_two_zero_weights():
    loss_fn = segkit.create_loss("ce_dice", dice_weight=2)
    text = repr(loss_fn)
    assert "ce_weight=1.0, dice_weight=2.0, class_weights=None, ignore_index=255" in text
    assert "(ce): CrossEntropyLoss" in text and "(dice): SoftmaxDiceLoss" in text
    message = "loss 'ce_dice': options 'ce_weight' and 'dice_weight' cannot both be 0"
    with pytest.raises(UsageError, match="^" + message.replace("(", r"\(")):
        segkit.create_loss("ce_dice", ce_weight=0, dice_weight=0)


def test_class_weights_text_drops_only_a_pair_of_brackets_and_accepts_the_bound():
    assert segkit.create_loss("ce", class_weights="(3, 4)").class_weights == (3.0, 4.0)
    with pytest.raises(UsageError, match="'class_weights'"):
        segkit.create_loss("ce", class_weights="12]")  # a bracket without its pair is not a list
    assert segkit.create_loss("ce", class_weights=[1e6, 0]).class_weights == (1e6, 0.0)
    with pytest.raises(UsageError, match="'class_weights'"):
        segkit.create_loss("ce", class_weights=[1.01e6, 1])


class MatmulLoss(MulticlassLoss):
    """Uses an op that autocast would run in bfloat16: the base must keep it in float32."""

    def compute(self, logits, target, one_hot, valid):
        flat = logits.flatten(1)
        return (flat @ flat.T).mean()


def test_a_multiclass_loss_computes_in_float32_under_autocast():
    logits, target = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert MatmulLoss()(logits, target).dtype == torch.float32


def test_inputs_that_are_not_tensors_are_refused_by_the_multiclass_checks():
    from segkit.losses import prepare_multiclass

    message = r"^a loss takes tensors: loss\(logits, target, ignore=None\)$"
    with pytest.raises(DataError, match=message):
        MatmulLoss()(torch.zeros(1, 2, 2, 2), [[0, 1], [1, 0]])
    with pytest.raises(DataError, match=message):
        prepare_multiclass(torch.zeros(1, 2, 2, 2), [[0, 1], [1, 0]], None)


def test_loss_tasks_and_their_messages_for_every_shape_of_metadata():
    from segkit.losses import loss_tasks

    assert loss_tasks({"tasks": "multiclass"}) == ("multiclass",)
    assert loss_tasks({"tasks": ["binary", "multiclass", "multilabel"]}) == (
        "binary",
        "multiclass",
        "multilabel",
    )
    assert loss_tasks(None) == DEFAULT_LOSS_TASKS
    with pytest.raises(UsageError, match=r"^loss 'x' is for binary, multiclass and multilabel tasks; "):
        check_loss_task("x", {"tasks": ("binary", "multiclass", "multilabel")}, "panoptic")
    with pytest.raises(
        UsageError, match=r"^loss 'x' serves no task; no registered loss serves a panoptic task$"
    ):
        check_loss_task("x", {"tasks": ()}, "panoptic")
    # Only losses are listed, never a model or a dataset of the same task.
    binary = losses_for_task("binary")
    assert set(BINARY_LOSSES) <= set(binary) and "unet" not in binary and "synthetic" not in binary


def test_multiclass_inputs_are_checked_with_messages_that_name_the_input():
    loss_fn = MatmulLoss()
    logits = torch.zeros(1, 3, 2, 2)
    with pytest.raises(DataError, match=r"^loss: the target holds class 3, outside \[0, 3\)"):
        loss_fn(logits, torch.full((1, 2, 2), 3))
    with pytest.raises(DataError, match=r"^loss: a multiclass target holds class indices.*got torch.bool$"):
        loss_fn(logits, torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(DataError, match=r"^loss: target shape \(1, 2, 3\) does not fit"):
        loss_fn(logits, torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(DataError, match=r"^loss: ignore shape \(1, 3, 2\) does not fit"):
        loss_fn(logits, torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.bool))
    # A loss made without a name is named after its class in messages.
    with pytest.raises(UsageError, match=r"^loss 'MatmulLoss': option 'class_weights' has 2 values"):
        MatmulLoss(class_weights=[1, 2])(logits, torch.zeros(1, 2, 2, dtype=torch.long))
