"""segkit.config.component_options: the one way components declare and check their keyword options."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import segkit
from segkit.config.component_options import (
    Option,
    boolean,
    choice,
    fraction,
    int_at_least,
    non_negative,
    non_negative_int,
    number,
    optional,
    parse_component_options,
    positive,
    positive_int,
)
from segkit.errors import UsageError

SPEC = {
    "alpha": Option(0.5, non_negative, help="weight of false positives"),
    "beta": Option(0.5, non_negative),
    "per_image": Option(False, boolean),
    "mode": Option("fast", choice("fast", "exact")),
    "limit": Option(None, optional(positive_int)),
}


def parse(given_options):
    return parse_component_options("loss", "bce_dice", given_options, SPEC)


def test_defaults_fill_what_is_not_given_in_declaration_order():
    assert parse({}) == {"alpha": 0.5, "beta": 0.5, "per_image": False, "mode": "fast", "limit": None}
    assert list(parse({"beta": 1})) == list(SPEC)
    assert parse({"beta": "0.25", "per_image": "TRUE", "limit": "none"})["beta"] == 0.25


def test_an_unknown_option_suggests_the_nearest_and_lists_the_options():
    with pytest.raises(UsageError) as error:
        parse({"alhpa": 0.3})
    assert str(error.value) == (
        "loss 'bce_dice' has no option 'alhpa' (did you mean 'alpha'?); "
        "its options are: alpha, beta, limit, mode, per_image"
    )


def test_an_unknown_option_without_a_near_name_has_no_suggestion():
    with pytest.raises(UsageError, match=r"^dataset 'folder' has no option 'zzz'; its options are: a$"):
        parse_component_options("dataset", "folder", {"zzz": 1}, {"a": Option(1, positive_int)})
    with pytest.raises(UsageError, match="takes no options"):
        parse_component_options("callback", "csv", {"zzz": 1}, {})


def test_a_bad_value_names_the_component_the_option_and_what_is_allowed():
    with pytest.raises(UsageError) as error:
        parse_component_options("loss", "dice", {"smooth": -1}, {"smooth": Option(1.0, positive)})
    assert str(error.value) == "loss 'dice': option 'smooth' must be a number > 0, got -1"
    with pytest.raises(UsageError, match=r"option 'mode' must be one of fast, exact, got 'slow'"):
        parse({"mode": "slow"})
    with pytest.raises(UsageError, match=r"option 'limit' must be a positive integer, or none, got 0"):
        parse({"limit": 0})


def test_allowed_text_given_explicitly_wins_and_a_parser_without_one_needs_it():
    option = Option(2, lambda value: int(value), "an integer, in words")
    with pytest.raises(UsageError, match="must be an integer, in words, got 'x'"):
        parse_component_options("model", "m", {"n": "x"}, {"n": option})
    with pytest.raises(TypeError, match="allowed"):
        Option(2, lambda value: value)


@given(st.booleans())
def test_bools_are_refused_where_integers_or_numbers_are_asked(flag):
    for parser in (positive_int, non_negative_int, int_at_least(0), number, positive, non_negative, fraction):
        with pytest.raises(UsageError, match="got (True|False)"):
            parse_component_options("model", "unet", {"n": flag}, {"n": Option(1, parser)})


@given(st.integers(min_value=1, max_value=10**9))
def test_positive_int_accepts_positive_ints_and_keeps_them(value):
    assert positive_int(value) == value and type(positive_int(value)) is int


@given(st.one_of(st.integers(max_value=0), st.floats(), st.text(), st.none()))
def test_positive_int_refuses_everything_else(value):
    with pytest.raises((TypeError, ValueError)):
        positive_int(value)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_must_be_finite_and_in_range(value):
    accepted = math.isfinite(value)
    for parser, in_range in ((number, True), (positive, value > 0), (fraction, 0 <= value <= 1)):
        if accepted and in_range:
            assert parser(value) == value and parser(str(value)) == value
        else:
            with pytest.raises(ValueError):
                parser(value)


@pytest.mark.parametrize("text, expected", [("true", True), ("False", False), (" TRUE ", True)])
def test_boolean_accepts_true_and_false_strings(text, expected):
    assert boolean(text) is expected and boolean(expected) is expected


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "maybe"])
def test_boolean_refuses_anything_else(value):
    with pytest.raises(ValueError):
        boolean(value)


def test_optional_accepts_none_in_its_spellings():
    parser = optional(positive)
    assert parser(None) is None and parser("none") is None and parser("None") is None
    assert parser("2") == 2.0
    assert parser.allowed == "a number > 0, or none"


# -- every built-in component declares its options through it --------------------------------------


@pytest.mark.parametrize(
    "kind, name",
    [
        ("loss", "bce"),
        ("loss", "bce_dice"),
        ("loss", "bce_tversky"),
        ("loss", "dice"),
        ("loss", "focal"),
        ("loss", "tversky"),
        ("model", "unet"),
        ("model", "resnet34_unet"),
        ("dataset", "folder"),
        ("dataset", "oxford_pet"),
        ("dataset", "synthetic"),
        ("callback", "csv"),
        ("callback", "excel"),
        ("callback", "early_stopping"),
    ],
)
def test_built_in_components_register_their_option_spec(kind, name):
    options = segkit.get_component(kind, name).metadata["options"]
    assert options and all(isinstance(option, Option) for option in options.values())
    assert all(option.allowed for option in options.values())


def test_the_oxford_pet_registration_carries_its_download_spec():
    from segkit.data.download import RemoteDataset

    spec = segkit.get_component("dataset", "oxford_pet").metadata["download"]
    assert isinstance(spec, RemoteDataset) and spec.name == "oxford-pet"


# -- old names keep working ------------------------------------------------------------------------


def test_moved_names_are_still_importable_from_the_builtin_plugin():
    import segkit.data.datasets
    import segkit.losses
    import segkit.models.blocks
    from segkit_builtin import folder, losses, unet

    assert losses.SegmentationLoss is segkit.losses.SegmentationLoss
    assert losses.prepare is segkit.losses.prepare
    assert losses.soft_dice_coefficient is segkit.losses.soft_dice_coefficient
    assert losses.soft_tversky_index is segkit.losses.soft_tversky_index
    assert losses.Option is Option
    assert folder.PairedImageDataset is segkit.data.datasets.PairedImageDataset
    assert folder.Pair is segkit.data.datasets.Pair
    assert folder.SkippedFilesWarning is segkit.data.datasets.SkippedFilesWarning
    assert folder.match_pairs is segkit.data.datasets.match_pairs
    assert folder.check_root is segkit.data.datasets.check_root
    assert unet.double_conv is segkit.models.blocks.double_conv
    assert unet.UpBlock is segkit.models.blocks.UpBlock


def test_the_checkpoint_module_still_offers_atomic_write():
    import segkit.atomic_files
    import segkit.checkpoint_files

    assert segkit.checkpoint_files.atomic_write is segkit.atomic_files.atomic_write
