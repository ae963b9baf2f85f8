"""Properties of the built-in losses (plugins/segkit_builtin/losses.py), checked with hypothesis."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from fixtures import QUICK, value_texts
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import segkit
from segkit.api import list_components
from segkit.config.options import parse_value
from segkit.errors import DataError, UsageError
from segkit.testing import check_loss

BUILTIN_LOSSES = ("bce", "dice", "tversky", "focal", "bce_dice", "bce_tversky")
PROPERTY = settings(max_examples=60, deadline=None)


# --- strategies ------


@st.composite
def batches(draw, logit_bound: float = 20.0, with_ignore: bool = True):
    """(logits, target, ignore) as float64 numpy arrays of one random (N, C, H, W) shape."""
    shape = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 2)),
        draw(st.integers(1, 9)),
        draw(st.integers(1, 9)),
    )
    logits = draw(
        hnp.arrays(np.float32, shape, elements=st.floats(-logit_bound, logit_bound, width=32))
    ).astype(np.float64)
    target = draw(hnp.arrays(np.bool_, shape)).astype(np.float64)
    if with_ignore and draw(st.booleans()):
        ignore = draw(hnp.arrays(np.bool_, shape))
    else:
        ignore = np.zeros(shape, dtype=bool)
    return logits, target, ignore


weights = st.floats(0.1, 3.0)
smooths = st.floats(0.01, 10.0)
fractions = st.floats(0.1, 1.0)


@st.composite
def losses_with_options(draw):
    """A built-in loss name and options for which every property below must hold strictly.

    Tversky alpha/beta and focal alpha stay away from 0: a zero weight makes some pixels not count,
    which is allowed but makes "worse prediction, higher loss" only non-strict.
    """
    name = draw(st.sampled_from(BUILTIN_LOSSES))
    per_image = draw(st.booleans())
    pos_weight = draw(st.one_of(st.none(), st.floats(0.2, 5.0)))
    if name == "bce":
        options = {"pos_weight": pos_weight}
    elif name == "dice":
        options = {"smooth": draw(smooths), "per_image": per_image}
    elif name == "tversky":
        options = {
            "alpha": draw(fractions),
            "beta": draw(fractions),
            "smooth": draw(smooths),
            "per_image": per_image,
        }
    elif name == "focal":
        options = {
            "gamma": draw(st.floats(0.0, 5.0)),
            "alpha": draw(st.one_of(st.none(), st.floats(0.05, 0.95))),
        }
    elif name == "bce_dice":
        options = {
            "pos_weight": pos_weight,
            "bce_weight": draw(weights),
            "dice_weight": draw(weights),
            "smooth": draw(smooths),
            "per_image": per_image,
        }
    else:
        options = {
            "pos_weight": pos_weight,
            "bce_weight": draw(weights),
            "tversky_weight": draw(weights),
            "alpha": draw(fractions),
            "beta": draw(fractions),
            "smooth": draw(smooths),
            "per_image": per_image,
        }
    return name, options


def tensors(logits, target, ignore, dtype=torch.float32):
    return (
        torch.tensor(logits, dtype=dtype, requires_grad=True),
        torch.tensor(target, dtype=dtype),
        torch.tensor(ignore, dtype=torch.bool),
    )


# --- independent numpy references ------


def log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def reference_bce(x, t, valid, pos_weight=None):
    weight = 1.0 if pos_weight is None else pos_weight
    per_pixel = -(weight * t * log_sigmoid(x) + (1 - t) * log_sigmoid(-x))
    return per_pixel[valid].sum() / max(valid.sum(), 1)


def _sums(values, valid, per_image):
    values = np.where(valid, values, 0.0)
    return values.reshape(len(values), -1).sum(axis=1) if per_image else np.array([values.sum()])


def reference_dice(x, t, valid, smooth, per_image):
    p = 1 / (1 + np.exp(-x))
    intersection = _sums(p * t, valid, per_image)
    total = _sums(p, valid, per_image) + _sums(t, valid, per_image)
    return 1 - np.mean((2 * intersection + smooth) / (total + smooth))


def reference_tversky(x, t, valid, alpha, beta, smooth, per_image):
    # Salehi et al.'s TP / (TP + alpha FP + beta FN), smoothed with s / 2 (segkit's documented form).
    p = 1 / (1 + np.exp(-x))
    tp = _sums(p * t, valid, per_image)
    fp = _sums(p * (1 - t), valid, per_image)
    fn = _sums((1 - p) * t, valid, per_image)
    half = smooth / 2
    return 1 - np.mean((tp + half) / (tp + alpha * fp + beta * fn + half))


def reference_focal(x, t, valid, gamma, alpha):
    p = 1 / (1 + np.exp(-x))
    p_t = np.where(t == 1, p, 1 - p)
    alpha_t = 1.0 if alpha is None else np.where(t == 1, alpha, 1 - alpha)
    log_p_t = np.where(t == 1, log_sigmoid(x), log_sigmoid(-x))
    per_pixel = -alpha_t * (1 - p_t) ** gamma * log_p_t
    return per_pixel[valid].sum() / max(valid.sum(), 1)


def reference(name, options, x, t, valid):
    o = {"pos_weight": None, "smooth": 1.0, "per_image": False, "alpha": 0.5, "beta": 0.5}
    o.update(options)
    if name == "bce":
        return reference_bce(x, t, valid, o["pos_weight"])
    if name == "dice":
        return reference_dice(x, t, valid, o["smooth"], o["per_image"])
    if name == "tversky":
        return reference_tversky(x, t, valid, o["alpha"], o["beta"], o["smooth"], o["per_image"])
    if name == "focal":
        return reference_focal(x, t, valid, options.get("gamma", 2.0), options.get("alpha", 0.25))
    bce = o.get("bce_weight", 1.0) * reference_bce(x, t, valid, o["pos_weight"])
    if name == "bce_dice":
        return bce + o.get("dice_weight", 1.0) * reference_dice(x, t, valid, o["smooth"], o["per_image"])
    tversky = reference_tversky(x, t, valid, o["alpha"], o["beta"], o["smooth"], o["per_image"])
    return bce + o.get("tversky_weight", 1.0) * tversky


# --- registration and the conformance kit ------


def test_builtin_losses_are_registered_with_one_line_descriptions():
    components = {component.name: component for component in list_components("loss")}
    for name in BUILTIN_LOSSES:
        assert name in components, f"loss {name!r} not registered"
        description = components[name].description
        assert description and "\n" not in description and len(description) <= 100


@pytest.mark.parametrize("name", sorted({c.name for c in list_components("loss")} | set(BUILTIN_LOSSES)))
@pytest.mark.parametrize("per_image", [False, True])
def test_every_registered_loss_passes_the_conformance_kit(name, per_image):
    options = (
        {"per_image": per_image}
        if per_image and name in ("dice", "tversky", "bce_dice", "bce_tversky")
        else {}
    )
    check_loss(name, options)


def test_defaults_are_documented_values():
    assert segkit.create_loss("bce_tversky").terms["tversky"].alpha == 0.5
    assert segkit.create_loss("bce_tversky").terms["tversky"].beta == 0.5
    dice = segkit.create_loss("dice")
    assert dice.per_image is False and dice.smooth == 1.0
    focal = segkit.create_loss("focal")
    assert (focal.gamma, focal.alpha) == (2.0, 0.25)


# --- values ------


@PROPERTY
@given(loss=losses_with_options(), batch=batches())
def test_losses_agree_with_numpy_reference(loss, batch):
    name, options = loss
    logits, target, ignore = batch
    expected = reference(name, options, logits, target, ~ignore)
    x, t, i = tensors(logits, target, ignore, dtype=torch.float64)
    value = segkit.create_loss(name, **options)(x, t, ignore=i)
    assert value.dtype == torch.float32 and value.dim() == 0
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


@PROPERTY
@given(batch=batches(), smooth=smooths, per_image=st.booleans(), bce_weight=weights, weight=weights)
def test_tversky_with_equal_half_weights_is_dice(batch, smooth, per_image, bce_weight, weight):
    x, t, i = tensors(*batch)
    dice = segkit.create_loss("dice", smooth=smooth, per_image=per_image)(x, t, i)
    tversky = segkit.create_loss("tversky", alpha=0.5, beta=0.5, smooth=smooth, per_image=per_image)(x, t, i)
    torch.testing.assert_close(tversky, dice, rtol=1e-5, atol=1e-6)
    bce_dice = segkit.create_loss(
        "bce_dice", smooth=smooth, per_image=per_image, bce_weight=bce_weight, dice_weight=weight
    )(x, t, i)
    bce_tversky = segkit.create_loss(
        "bce_tversky", smooth=smooth, per_image=per_image, bce_weight=bce_weight, tversky_weight=weight
    )(x, t, i)
    torch.testing.assert_close(bce_tversky, bce_dice, rtol=1e-5, atol=1e-6)


@PROPERTY
@given(loss=losses_with_options(), batch=batches(), data=st.data())
def test_perfect_prediction_is_the_minimum(loss, batch, data):
    name, options = loss
    _, target, ignore = batch
    loss_fn = segkit.create_loss(name, **options)
    perfect = np.where(target == 1, 30.0, -30.0)
    best = loss_fn(*tensors(perfect, target, ignore)).item()
    assert 0 <= best < 1e-4
    valid_positions = np.argwhere(~ignore)
    if len(valid_positions) == 0:
        return
    chosen = data.draw(
        st.lists(st.integers(0, len(valid_positions) - 1), min_size=1, max_size=5, unique=True),
        label="pixels",
    )
    perturbed = perfect.copy()
    for index in chosen:
        perturbed[tuple(valid_positions[index])] = data.draw(st.floats(-4.0, 4.0), label="logit")
    worse = loss_fn(*tensors(perturbed, target, ignore)).item()
    assert worse > best


@PROPERTY
@given(loss=losses_with_options(), batch=batches(logit_bound=5.0))
def test_gradients_point_the_right_way(loss, batch):
    """Raising a foreground logit or lowering a background one lowers the loss; ignored pixels get 0."""
    name, options = loss
    logits, target, ignore = batch
    x, t, i = tensors(logits, target, ignore)
    segkit.create_loss(name, **options)(x, t, i).backward()
    grad = x.grad
    foreground = (t == 1) & ~i
    background = (t == 0) & ~i
    assert (grad[foreground] < 0).all(), grad[foreground]
    assert (grad[background] > 0).all(), grad[background]
    assert (grad[i] == 0).all()


# --- ignore ------


junk_logits = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([1e30, -1e30])
)


@PROPERTY
@given(loss=losses_with_options(), batch=batches(), data=st.data())
def test_ignored_pixels_change_neither_loss_nor_gradient(loss, batch, data):
    name, options = loss
    logits, target, ignore = batch
    shape = logits.shape
    other_logits = np.where(ignore, data.draw(hnp.arrays(np.float64, shape, elements=junk_logits)), logits)
    junk_target = data.draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([0, 1, 2, 255])))
    other_target = np.where(ignore, junk_target, target)
    loss_fn = segkit.create_loss(name, **options)
    first = tensors(logits, target, ignore)
    second = tensors(other_logits, other_target, ignore)
    value, other_value = loss_fn(*first), loss_fn(*second)
    assert torch.equal(value, other_value)
    value.backward()
    other_value.backward()
    assert torch.equal(first[0].grad, second[0].grad)


def test_all_ignored_batch_gives_zero_loss_with_a_graph():
    logits = torch.randn(2, 1, 4, 4, requires_grad=True)
    target = torch.ones(2, 1, 4, 4)
    ignore = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    for name in BUILTIN_LOSSES:
        value = segkit.create_loss(name)(logits, target, ignore)
        assert value.item() == 0.0
        value.backward()


# --- extreme logits and mixed precision ------


@settings(max_examples=25, deadline=None)
@given(
    loss=losses_with_options(),
    batch=batches(with_ignore=True),
    dtype=st.sampled_from(["fp32", "bf16", "fp16"]),
)
def test_extreme_logits_give_finite_losses_and_gradients(loss, batch, dtype):
    name, options = loss
    _, target, ignore = batch
    signs = np.where(np.random.default_rng(target.size).random(target.shape) < 0.5, -1.0, 1.0)
    for magnitude in (100.0, 1e4):
        logits = signs * magnitude
        loss_fn = segkit.create_loss(name, **options)
        if dtype == "fp32":
            x, t, i = tensors(logits, target, ignore)
            value = loss_fn(x, t, i)
        else:
            amp = torch.bfloat16 if dtype == "bf16" else torch.float16
            x, t, i = tensors(logits, target, ignore, dtype=amp)
            with torch.autocast("cpu", dtype=amp):
                value = loss_fn(x, t, i)
            assert value.dtype == torch.float32, "reductions must run in float32"
        assert torch.isfinite(value), f"{name} {options} not finite for logits of {magnitude} in {dtype}"
        value.backward()
        assert torch.isfinite(x.grad).all()


def test_autocast_value_matches_float32():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, generator=generator) * 4
    target = (torch.rand(2, 1, 16, 16, generator=generator) > 0.5).float()
    for name in BUILTIN_LOSSES:
        loss_fn = segkit.create_loss(name)
        exact = loss_fn(logits.bfloat16().float(), target)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = loss_fn(logits.bfloat16(), target.bfloat16())
        torch.testing.assert_close(mixed, exact, rtol=1e-6, atol=1e-6)


# --- options and bad input ------


def test_options_given_as_strings_are_parsed():
    loss = segkit.create_loss("bce_tversky", alpha="0.3", beta="0.7", per_image="true", pos_weight="2")
    tversky = loss.terms["tversky"]
    assert (tversky.alpha, tversky.beta, tversky.per_image) == (0.3, 0.7, True)
    assert loss.terms["bce"].pos_weight == 2.0
    assert segkit.create_loss("focal", alpha="none").alpha is None


OPTIONS = {
    "bce": ["class_weights", "pos_weight"],
    "dice": ["per_channel", "per_image", "smooth"],
    "tversky": ["alpha", "beta", "per_channel", "per_image", "smooth"],
    "focal": ["alpha", "gamma"],
    "bce_dice": [
        "bce_weight",
        "class_weights",
        "dice_weight",
        "per_channel",
        "per_image",
        "pos_weight",
        "smooth",
    ],
    "bce_tversky": [
        "alpha",
        "bce_weight",
        "beta",
        "class_weights",
        "per_channel",
        "per_image",
        "pos_weight",
        "smooth",
        "tversky_weight",
    ],
}


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_unknown_option_names_the_option_and_lists_the_allowed_ones(name):
    with pytest.raises(UsageError) as error:
        segkit.create_loss(name, smoothness=1.0)
    message = str(error.value)
    assert message.startswith(f"loss {name!r} has no option 'smoothness'")
    assert message.endswith("options are: " + ", ".join(OPTIONS[name]))
    # Every option listed is accepted.
    segkit.create_loss(name, **{option: _valid_value(option) for option in OPTIONS[name]})


def _valid_value(option):
    return {"per_image": True, "per_channel": True, "class_weights": [1.5], "alpha": 0.4, "beta": 0.6}.get(
        option, 1.5
    )


@pytest.mark.parametrize(
    ("name", "options", "option", "allowed"),
    [
        ("dice", {"smooth": 0}, "smooth", "> 0"),
        ("dice", {"smooth": -1.0}, "smooth", "> 0"),
        ("dice", {"smooth": True}, "smooth", "> 0"),
        ("dice", {"smooth": float("nan")}, "smooth", "> 0"),
        ("dice", {"per_image": "maybe"}, "per_image", "true or false"),
        ("tversky", {"alpha": -0.1}, "alpha", "in [0, 1e+06]"),
        ("bce_tversky", {"beta": "x"}, "beta", "in [0, 1e+06]"),
        ("bce_tversky", {"alpha": 0, "beta": 0}, "alpha", "both be 0"),
        ("focal", {"alpha": 1.5}, "alpha", "[0, 1]"),
        ("focal", {"gamma": -1}, "gamma", ">= 0"),
        ("bce", {"pos_weight": 0}, "pos_weight", "in (0, 1e+06]"),
        ("bce", {"pos_weight": 4e36}, "pos_weight", "in (0, 1e+06]"),  # would overflow float32
        ("bce_dice", {"bce_weight": -1}, "bce_weight", "in [0, 1e+06]"),
        ("bce_dice", {"bce_weight": 0, "dice_weight": 0}, "dice_weight", "both be 0"),
        ("bce_tversky", {"tversky_weight": [1]}, "tversky_weight", "in [0, 1e+06]"),
    ],
)
def test_invalid_option_values_name_the_option_and_allowed_values(name, options, option, allowed):
    with pytest.raises(UsageError) as error:
        segkit.create_loss(name, **options)
    message = str(error.value)
    assert f"'{option}'" in message and allowed in message and message.startswith(f"loss {name!r}")


LOSS_OPTIONS = [
    "pos_weight",
    "bce_weight",
    "dice_weight",
    "tversky_weight",
    "alpha",
    "beta",
    "smooth",
    "per_image",
    "gamma",
    "reduction",
]


@QUICK
@given(
    name=st.sampled_from(["bce", "dice", "tversky", "focal", "bce_dice", "bce_tversky"]),
    options=st.dictionaries(st.sampled_from(LOSS_OPTIONS), value_texts.map(parse_value), max_size=3),
)
def test_loss_options_give_a_finite_loss_or_are_refused(name, options):
    try:
        loss = segkit.create_loss(name, **options)
    except UsageError:
        return
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=generator) * 4
    target = (torch.rand(2, 1, 8, 8, generator=generator) > 0.5).float()
    value = loss(logits, target)
    assert value.dim() == 0 and torch.isfinite(value), (name, options, value)


@pytest.mark.parametrize("name", BUILTIN_LOSSES)
def test_mismatched_shapes_raise_data_error(name):
    loss_fn = segkit.create_loss(name)
    with pytest.raises(DataError, match="target shape"):
        loss_fn(torch.zeros(2, 1, 8, 8), torch.zeros(2, 2, 8, 8))
    with pytest.raises(DataError, match="ignore"):
        loss_fn(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8))


# --- gaps found by mutation testing (MUTATION.md) ------


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("tversky", {"alpha": 0, "beta": 0}, "loss 'tversky': options 'alpha' and 'beta' cannot both be 0"),
        (
            "bce_tversky",
            {"alpha": 0, "beta": 0},
            "loss 'bce_tversky': options 'alpha' and 'beta' cannot both be 0",
        ),
        (
            "bce_dice",
            {"bce_weight": 0, "dice_weight": 0},
            "loss 'bce_dice': options 'bce_weight' and 'dice_weight' cannot both be 0",
        ),
        (
            "bce_tversky",
            {"bce_weight": 0, "tversky_weight": 0},
            "loss 'bce_tversky': options 'bce_weight' and 'tversky_weight' cannot both be 0",
        ),
    ],
)
def test_options_that_leave_no_signal_are_refused_by_name(name, options, message):
    with pytest.raises(UsageError, match="^" + re.escape(message)):
        segkit.create_loss(name, **options)
    # One of the two may be 0.
    first = next(iter(options))
    segkit.create_loss(name, **{first: 0})


@pytest.mark.parametrize("name", ["bce", "bce_dice", "bce_tversky"])
def test_class_weights_of_the_wrong_length_name_the_loss(name):
    loss_fn = segkit.create_loss(name, class_weights=[1.0, 2.0])
    with pytest.raises(
        UsageError, match=rf"^loss '{name}': option 'class_weights' has 2 values but the logits have 1"
    ):
        loss_fn(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    from segkit_builtin.losses import BCELoss

    with pytest.raises(UsageError, match=r"^loss 'bce': option 'class_weights' has 2 values"):
        BCELoss(class_weights=(1.0, 2.0))(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(("name", "second"), [("bce_dice", "dice"), ("bce_tversky", "tversky")])
def test_the_sums_pass_pos_weight_to_their_bce_term(name, second):
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 5, 5, generator=generator) * 3
    target = (torch.rand(2, 1, 5, 5, generator=generator) > 0.6).float()
    x, t = logits.double().numpy(), target.double().numpy()
    valid = np.ones_like(x, dtype=bool)
    expected = reference("bce", {"pos_weight": 3.0}, x, t, valid) + reference(second, {}, x, t, valid)
    value = segkit.create_loss(name, pos_weight=3.0)(logits, target)
    assert float(value) == pytest.approx(expected, rel=1e-5)


def test_loss_classes_default_to_their_documented_values():
    from segkit_builtin.losses import DiceLoss, FocalLoss, TverskyLoss

    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 2, 4, 4, generator=generator) * 2  # two images, two channels
    target = (torch.rand(2, 2, 4, 4, generator=generator) > 0.7).float()
    target[0, 1] = 0  # an empty channel of one image: per_image and per_channel change the value

    def same(a, b):
        return float(a(logits, target)) == pytest.approx(float(b(logits, target)), abs=1e-7)

    assert same(TverskyLoss(), TverskyLoss(0.5, 0.5, 1.0, False, False))
    assert not same(TverskyLoss(), TverskyLoss(0.5, 0.5, 1.0, True, False))
    assert not same(TverskyLoss(), TverskyLoss(0.5, 0.5, 1.0, False, True))
    assert same(TverskyLoss(), DiceLoss())
    assert same(DiceLoss(), DiceLoss(1.0, False, False))
    assert not same(DiceLoss(), DiceLoss(2.0, False, False))
    assert not same(DiceLoss(), DiceLoss(1.0, True, False))
    assert not same(DiceLoss(), DiceLoss(1.0, False, True))
    assert same(FocalLoss(), FocalLoss(gamma=2.0, alpha=0.25))


def test_reprs_show_the_options():
    assert "pos_weight=None, class_weights=(1.0, 2.0)" in repr(
        segkit.create_loss("bce", class_weights=[1, 2])
    )
    assert "class_weights" not in repr(segkit.create_loss("bce"))
    assert "smooth=1.0, per_image=False, per_channel=True" in repr(
        segkit.create_loss("dice", per_channel=True)
    )
    assert "per_channel" not in repr(segkit.create_loss("dice"))
    tversky = repr(segkit.create_loss("tversky", per_channel=True))
    assert "alpha=0.5, beta=0.5, smooth=1.0, per_image=False, per_channel=True" in tversky
    assert "per_channel" not in repr(segkit.create_loss("tversky"))
    assert "bce_weight=1.0, dice_weight=2.0" in repr(segkit.create_loss("bce_dice", dice_weight=2))
