"""Fuzzing: option parsing, config files and image decoders against arbitrary input.

The property everywhere: segkit either accepts the input or refuses it with its own ``SegkitError``
(``UsageError`` for what the user typed, ``DataError`` for files), which the CLI prints as one
``Error:`` line. No other exception, no traceback, no hang.

- ``KEY=VALUE`` options, through ``parse_options`` and through ``segkit run`` (combined with an invalid
  ``--epochs 0`` so that nothing trains), and then into the factories that receive them (the UNet
  built on the ``meta`` device, so absurd widths allocate nothing; every built-in loss).
- ``run.toml`` config files: random TOML documents and random bytes through ``resolve_run_config``.
- Image decoders: bytes of real Oxford-IIIT Pet files (a baseline JPEG, a progressive JPEG, a JPEG
  with an EXIF block and thumbnail, a GIF named .jpg, a PNG trimap) with bytes flipped, inserted,
  deleted, repeated or cut off, through ``read_image``, ``read_mask``, ``check_image_file`` and a
  folder dataset.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from data_fixtures import REAL_SAMPLE, save
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import segkit
from segkit.cli import cli
from segkit.config import REPORT_DEFAULTS, resolve_run_config
from segkit.errors import DataError, UsageError
from segkit.imageio import check_image_file, read_image, read_mask
from segkit.options import parse_options, parse_value

QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
DECODING = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
#: Text a user might type after ``=``: literals of every kind, near-literals and junk.
value_texts = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "true",
            "False",
            "none",
            "null",
            "nan",
            "-inf",
            "1e999",
            "0x10",
            "1_000",
            "[1, 2]",
            "(1,)",
            "{'a': 1}",
            "{1, 2}",
            "[[[[",
            "((((" * 50,
            "9" * 5000,
            "'unclosed",
            "b'bytes'",
            "__import__('os').system('true')",
            "os.system",
            "lambda: 0",
            "\0",
            "",
        ]
    ),
    st.text(max_size=30),
)
pairs = st.one_of(
    st.tuples(identifiers, value_texts).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.text(max_size=30),  # anything at all, '=' or not
)


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"segkit crashed with {result.exception!r}:\n{result.output}")
    return result


# -- KEY=VALUE options ---------------------------------------------------------------------------------


@QUICK
@given(texts=st.lists(pairs, max_size=5))
def test_parse_options_accepts_or_refuses_with_a_usage_error(texts):
    try:
        options = parse_options(texts, "--model-option")
    except UsageError as error:
        assert "--model-option" in str(error)
        return
    assert len(options) == len(texts)
    for text in texts:
        key, _, value = text.partition("=")
        assert options[key.strip()] == parse_value(value)


@QUICK
@given(
    key=identifiers,
    value=st.one_of(
        st.integers(),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.lists(st.integers(-1000, 1000), max_size=4),
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True),
    ),
)
def test_typed_values_come_back_as_typed(key, value):
    assume(
        not (isinstance(value, str) and value in ("true", "false", "none", "null"))
    )  # words with a meaning
    if isinstance(value, bool) or value is None:
        text = {True: "true", False: "false", None: "none"}[value]
    else:
        text = value if isinstance(value, str) else repr(value)
    parsed = parse_options([f"{key}={text}"], "--loss-option")[key]
    assert parsed == value and type(parsed) is type(value)


@QUICK
@given(
    option=st.sampled_from(["--model-option", "--loss-option", "--dataset-option", "--callback-option"]),
    texts=st.lists(pairs, min_size=1, max_size=3),
)
def test_cli_options_never_crash(tmp_path_factory, option, texts):
    """Whatever the options, ``segkit run ... --epochs 0`` is a usage error (exit 2), never a crash."""
    out = tmp_path_factory.mktemp("out")
    args = ["run", "--epochs", "0", "--out", out]
    for text in texts:
        args += [f"{option}={text}"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert not any(out.iterdir())


@QUICK
@given(
    options=st.dictionaries(
        st.sampled_from(["base_channels", "pad_mode", "depth", "channels"]),
        st.one_of(value_texts.map(parse_value), st.integers(-10, 10**12)),
        max_size=3,
    )
)
def test_unet_options_build_a_model_or_are_refused(options):
    with torch.device("meta"):  # absurd widths allocate nothing
        try:
            model = segkit.create_model("unet", in_channels=3, out_channels=1, **options)
        except UsageError:
            return
    assert isinstance(model, torch.nn.Module)


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


# -- config files ----------------------------------------------------------------------------------------


def toml_value(value) -> str:
    """A TOML literal for the values generated below (TOML has no null: None is never generated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value)
            + '"'
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def toml_document(settings_: dict, tables: dict) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in settings_.items()]
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=12))
toml_values = st.one_of(scalars, st.lists(scalars, max_size=3))

#: Settings whose values ``validate`` checks today; values of any type must be accepted or refused there.
VALIDATED = [
    "epochs",
    "batch_size",
    "image_size",
    "learning_rate",
    "threshold",
    "workers",
    "optimizer",
    "scheduler",
    "amp",
    "on_nan",
]
#: Plausible values for the other settings, so that documents often pass validation too.
PLAUSIBLE = {
    "model": st.sampled_from(["unet", "resnet34_unet", "unet2", "os.system"]),
    "loss": st.sampled_from(["bce_dice", "bce_tversky", "focal", "bce-dice"]),
    "dataset": st.sampled_from(["synthetic", "folder", "oxford_pet", "imagenet"]),
    "augment": st.sampled_from(["none", "default", "strong"]),
    "seed": st.integers(0, 2**31),
    "time_budget": st.sampled_from(["90s", "15m", "1.5h", 30, 0.5, "soon", "-1m", ""]),
    "callbacks": st.lists(st.sampled_from(["csv", "excel", "early_stopping", "cvs"]), max_size=2),
}


@QUICK
@given(
    validated=st.dictionaries(st.sampled_from(VALIDATED), toml_values, max_size=4),
    plausible=st.fixed_dictionaries({}, optional=PLAUSIBLE),
    unknown=st.one_of(
        st.just({}), st.just({}), st.dictionaries(identifiers, scalars, min_size=1, max_size=1)
    ),
    tables=st.dictionaries(
        st.sampled_from(["model_options", "loss_options", "dataset_options"]),
        st.dictionaries(identifiers, scalars, max_size=2),
        max_size=2,
    ),
)
def test_config_files_resolve_or_are_refused_with_a_usage_error(
    tmp_path_factory, validated, plausible, unknown, tables
):
    document = {**validated, **plausible, **unknown}
    path = tmp_path_factory.mktemp("config") / "run.toml"
    path.write_text(toml_document(document, tables), encoding="utf-8")
    try:
        config = resolve_run_config({}, path, None)
    except UsageError as error:
        assert str(error)
        return
    assert set(config.values) == set(REPORT_DEFAULTS)
    assert all(key in REPORT_DEFAULTS for key in document)
    for key in ("epochs", "batch_size", "image_size"):
        assert isinstance(config[key], int) and config[key] >= 1
    assert 0 < config["threshold"] < 1 and config["learning_rate"] > 0


@QUICK
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")),
        st.sampled_from(
            [
                b"[model_options",
                b"epochs = ",
                b"\xff\xfe",
                b"a = 1\na = 2\n",
                b"model_options = 3\n",
                b"[model_options]\n[model_options]\n",
            ]
        ),
    )
)
def test_config_files_of_arbitrary_bytes_are_refused_or_read(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "run.toml"
    path.write_bytes(data)
    try:
        resolve_run_config({}, path, None)
    except UsageError as error:
        message = str(error)
        assert str(path) in message or "unknown setting" in message or "unknown" in message.lower(), message


def test_config_file_errors_reach_the_user_as_one_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes(b"epochs = [1,\n")
    result = invoke("run", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert re.match(
        rf"Error: config file {re.escape(str(path))} is not valid TOML", result.output.splitlines()[-1]
    )


# -- image decoders on mutated real files ----------------------------------------------------------------

SEED_FILES = {
    "baseline-jpeg": "images/Abyssinian_192.jpg",
    "progressive-jpeg": "images/Abyssinian_180.jpg",
    "jpeg-with-exif-thumbnail": "images/Bengal_146.jpg",
    "gif-named-jpg": "images/Abyssinian_34.jpg",
    "png-trimap": "annotations/trimaps/Abyssinian_34.png",
}
_SEED_BYTES: dict[str, bytes] = {}


def seed_bytes(name: str) -> bytes:
    if name not in _SEED_BYTES:
        path = REAL_SAMPLE / SEED_FILES[name]
        if not path.is_file():
            pytest.skip(f"real sample not found at {REAL_SAMPLE}")
        _SEED_BYTES[name] = path.read_bytes()
    return _SEED_BYTES[name]


@st.composite
def mutations(draw, size: int):
    """A list of edits to a file of ``size`` bytes, mostly within its first 2 kB (the headers)."""
    position = st.one_of(st.integers(0, min(size - 1, 2047)), st.integers(0, size - 1))
    edit = st.one_of(
        st.tuples(st.just("set"), position, st.integers(0, 255)),
        st.tuples(st.just("xor"), position, st.integers(1, 255)),
        st.tuples(st.just("insert"), position, st.binary(min_size=1, max_size=16)),
        st.tuples(st.just("delete"), position, st.integers(1, 64)),
        st.tuples(st.just("repeat"), position, st.integers(1, 64)),
        st.tuples(st.just("truncate"), st.integers(0, size - 1), st.just(0)),
        st.tuples(
            st.just("big-number"), position, st.sampled_from([b"\xff\xff", b"\x7f\xff\xff\xff", b"\0\0"])
        ),
    )
    return draw(st.lists(edit, min_size=1, max_size=4))


def mutate(data: bytes, edits) -> bytes:
    buffer = bytearray(data)
    for kind, position, argument in edits:
        position = min(position, max(len(buffer) - 1, 0))
        if kind == "set":
            buffer[position : position + 1] = bytes([argument])
        elif kind == "xor":
            buffer[position : position + 1] = bytes([buffer[position] ^ argument]) if buffer else b""
        elif kind == "insert":
            buffer[position:position] = argument
        elif kind == "delete":
            del buffer[position : position + argument]
        elif kind == "repeat":
            buffer[position:position] = buffer[position : position + argument]
        elif kind == "truncate":
            del buffer[position:]
        else:  # overwrite with a large (or zero) number, e.g. a width or a segment length
            buffer[position : position + len(argument)] = argument
    return bytes(buffer)


def seed_and_edits():
    return st.sampled_from(sorted(SEED_FILES)).flatmap(
        lambda name: st.tuples(st.just(name), mutations(len(seed_bytes(name))))
    )


def decode_or_data_error(function, path: Path):
    try:
        return function(path)
    except DataError as error:
        assert str(path) in str(error), error
        return None


@DECODING
@given(case=seed_and_edits())
def test_mutated_real_files_decode_or_give_a_data_error(tmp_path_factory, case):
    name, edits = case
    path = tmp_path_factory.mktemp("fuzz") / Path(SEED_FILES[name]).name
    path.write_bytes(mutate(seed_bytes(name), edits))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # segkit's pixel limit must act first
        size = decode_or_data_error(check_image_file, path)
        image = decode_or_data_error(read_image, path)
        mask = decode_or_data_error(read_mask, path)
    if image is not None:
        assert image.mode == "RGB" and image.width * image.height >= 1
    if mask is not None:
        assert mask.ndim == 2 and mask.dtype in (np.uint8, np.uint16)
    if size is not None and image is not None:
        assert size == (image.height, image.width), "the cheap check and the decoder disagree on the size"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=seed_and_edits().filter(lambda case: case[0] != "png-trimap"))
def test_a_folder_dataset_with_a_mutated_photo_loads_or_names_it(tmp_path_factory, case):
    """Built like ``segkit run --dataset folder`` builds it: the photo is skipped (warning), refused
    (DataError naming it) or loaded into a tensor; nothing else."""
    from segkit_builtin.folder import SkippedFilesWarning, build_folder

    name, edits = case
    root = tmp_path_factory.mktemp("folder")
    photo = root / "train" / "images" / "cat.jpg"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(mutate(seed_bytes(name), edits))
    good = root / "train" / "images" / "dog.png"
    save(good, np.zeros((24, 32, 3), np.uint8), "PNG")
    size = decode_or_data_error(check_image_file, photo) or (24, 32)
    save(root / "train" / "masks" / "cat.png", np.zeros(size, np.uint8), "PNG")
    save(root / "train" / "masks" / "dog.png", np.zeros((24, 32), np.uint8), "PNG")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = build_folder(root, split="train", image_size=32, augment="none")
        except DataError as error:
            assert str(photo) in str(error) or "cat.png" in str(error), error
            return
    skipped = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert dataset.names == (["dog"] if skipped else ["cat", "dog"])
    for index in range(len(dataset)):
        try:
            item = dataset[index]
        except DataError as error:
            assert str(photo) in str(error), error
            continue
        assert item["image"].shape == (3, 32, 32) and torch.isfinite(item["image"]).all()


def test_the_seed_files_themselves_decode(real_sample):
    """The unmutated seeds are valid, so the mutations are what the decoders are tested against."""
    for name, relative in SEED_FILES.items():
        image = read_image(real_sample / relative)
        assert check_image_file(real_sample / relative) == (image.height, image.width), name


# -- checkpoint fields ---------------------------------------------------------------------------------

#: Values torch.load(weights_only=True) gives back: what a crafted checkpoint can hold.
safe_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**40), 2**40),
        st.floats(),
        st.text(max_size=8),
        st.sampled_from(["unet", "imagenet", "os.system"]),
        st.just(torch.zeros(2, 2)),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["mean", "std", "base_channels", "pad_mode", "x"]), children, max_size=3
        ),
    ),
    max_leaves=6,
)
CHECKPOINT_FIELDS = [
    "model_name",
    "in_channels",
    "out_channels",
    "model_options",
    "image_size",
    "threshold",
    "normalization",
    "model_state",
    "format",
]


@pytest.fixture(scope="module")
def genuine_payload() -> dict:
    from segkit.transforms import IMAGENET_MEAN, IMAGENET_STD

    model = segkit.create_model("unet", in_channels=3, out_channels=1, base_channels=2)
    return {
        "format": 1,
        "model_name": "unet",
        "model_options": {"base_channels": 2},
        "in_channels": 3,
        "out_channels": 1,
        "image_size": 16,
        "threshold": 0.5,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "model_state": model.state_dict(),
    }


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(st.sampled_from(CHECKPOINT_FIELDS), safe_values, min_size=1, max_size=3),
    dropped=st.sets(st.sampled_from(CHECKPOINT_FIELDS), max_size=1),
)
def test_crafted_checkpoint_fields_load_and_predict_or_give_a_checkpoint_error(
    tmp_path_factory, genuine_payload, changes, dropped
):
    from segkit.checkpoint import save_checkpoint
    from segkit.errors import CheckpointError, SegkitError
    from segkit.inference import load_trained_model, predict_probability

    if isinstance(changes.get("model_options"), dict):  # small widths only: a real model gets built
        options = changes["model_options"]
        assume(not any(isinstance(v, int) and not isinstance(v, bool) and v > 8 for v in options.values()))
    payload = {key: value for key, value in {**genuine_payload, **changes}.items() if key not in dropped}
    path = tmp_path_factory.mktemp("checkpoint") / "best.pt"
    save_checkpoint(path, payload)
    try:
        trained = load_trained_model(path)
    except CheckpointError as error:
        assert str(path) in str(error), error
        return
    try:
        probability = predict_probability(trained, Image.new("RGB", (20, 12), (90, 120, 30)))
    except SegkitError:  # e.g. a model for one input channel given an RGB photo: a usage error
        return
    assert probability.shape == (12, 20) and ((probability >= 0) & (probability <= 1)).all()


# -- settings of the wrong type in a config file: the cases fuzzing found ------------------------------

WRONG_TYPES = [
    pytest.param('seed = "x"', "seed", id="seed-a-string"),
    pytest.param('weight_decay = "x"', "weight_decay", id="weight-decay-a-string"),
    pytest.param("weight_decay = -1", "weight_decay", id="weight-decay-negative"),
    pytest.param('warmup_fraction = "x"', "warmup_fraction", id="warmup-a-string"),
    pytest.param("time_budget = [1]", "time_budget", id="time-budget-a-list"),
    pytest.param("model = 5", "model", id="model-a-number"),
    pytest.param('loss = ["bce"]', "loss", id="loss-a-list"),
    pytest.param("dataset = 3", "dataset", id="dataset-a-number"),
    pytest.param("recipe = 5", "recipe", id="recipe-a-number"),
    pytest.param("[callback_options]\ncsv = 5", "csv", id="callback-options-not-tables"),
    pytest.param("amp = 5", "amp", id="amp-a-number"),
    pytest.param("on_nan = 1", "on-nan", id="on-nan-a-number"),
    pytest.param("threshold = nan", "threshold", id="threshold-nan"),
    pytest.param("learning_rate = nan", "learning-rate", id="learning-rate-nan"),
    pytest.param("model_options = 5", "model_options", id="model-options-not-a-table"),
    pytest.param('[model_options]\nbase_channels = "x"', "base_channels", id="width-a-string"),
    pytest.param(
        "[model_options]\nbase_channels = 1_000_000_000_000", "base_channels", id="width-beyond-any-memory"
    ),
]


@pytest.mark.parametrize("line, named", WRONG_TYPES)
def test_a_setting_of_the_wrong_type_is_a_usage_error_naming_it(tmp_path, line, named):
    path = tmp_path / "run.toml"
    tiny_model = "" if "model_options" in line else "\n[model_options]\nbase_channels = 4"
    path.write_text(line + tiny_model + "\n")
    result = invoke(
        "run",
        "--config",
        path,
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--quiet",
        "--dataset-option",
        "train_size=2",
        "--dataset-option",
        "valid_size=2",
        "--callback",
        "csv",
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 2, result.output
    (error,) = [text for text in result.output.splitlines() if text.startswith("Error:")]
    assert named in error, error
