"""Checkpoints (segkit.checkpoint_files) as they are read: a checkpoint may come from anyone.

- A checkpoint crafted to execute code when unpickled is refused by every command that reads
  checkpoints (predict, evaluate, export, run --resume) with a ``CheckpointError``, and the code does
  not run (its marker file never appears). The same files *do* run their code under a plain
  ``torch.load(weights_only=False)``, which shows the test files are really malicious.
- A checkpoint for another model, another number of channels or a newer format, or with crafted
  fields, is a one-line error naming the mismatch.
- A model name in a checkpoint is looked up in the plugin registry only: a module path there is an
  unknown name, and the module is never imported (config files: test_config_files.py).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import pytest
import torch
from fixtures import EVIL_MODULE, error_line, invoke
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import segkit
from segkit.checkpoint_files import FORMAT_VERSION, load_checkpoint
from segkit.errors import CheckpointError


@pytest.fixture
def photo(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.png"
    Image.new("RGB", (20, 16), (120, 80, 40)).save(path)
    return path


# -- checkpoints that run code when unpickled ---------------------------------------------------------


class RunsShellCommand:
    """Unpickling calls os.system("touch MARKER")."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class RunsPython:
    """Unpickling calls exec(...) on Python source that writes MARKER."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


class CreatesFile:
    """Unpickling calls pathlib.Path.touch(MARKER): no shell, no exec, just a stdlib method."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def write_malicious(path: Path, marker: Path, how: str, genuine: dict) -> Path:
    """A checkpoint file at ``path`` that runs code creating ``marker`` when unpickled unsafely."""
    payloads = {
        "shell-in-a-real-checkpoint": lambda: {**genuine, "notes": RunsShellCommand(marker)},
        "exec-as-the-whole-file": lambda: RunsPython(marker),
        "touch-in-the-model-state": lambda: {
            **genuine,
            "model_state": {**genuine["model_state"], "extra": CreatesFile(marker)},
        },
        # no tensors: torch 2.14 cannot read tensors back from its own legacy format anyway
        "legacy-torch-format": lambda: {
            "format": FORMAT_VERSION,
            "model_name": "unet",
            "notes": RunsPython(marker),
        },
    }
    if how == "plain-pickle-file":
        path.write_bytes(
            pickle.dumps({"format": FORMAT_VERSION, "model_state": {}, "notes": RunsShellCommand(marker)})
        )
    elif how == "legacy-torch-format":
        torch.save(payloads[how](), path, _use_new_zipfile_serialization=False)
    else:
        torch.save(payloads[how](), path)
    return path


MALICIOUS = [
    "shell-in-a-real-checkpoint",
    "exec-as-the-whole-file",
    "touch-in-the-model-state",
    "legacy-torch-format",
    "plain-pickle-file",
]


@pytest.fixture
def genuine(trained_run) -> dict:
    return load_checkpoint(trained_run / "best.pt")


@pytest.mark.parametrize("how", MALICIOUS)
def test_the_malicious_files_really_run_code_under_an_unsafe_load(tmp_path, genuine, how):
    """The control: without weights_only these files do execute, so the refusals below mean something."""
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "evil.pt", marker, how, genuine)
    if how == "plain-pickle-file":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", MALICIOUS)
def test_load_checkpoint_refuses_code_and_runs_none(tmp_path, genuine, how):
    marker = tmp_path / "pwned"
    path = write_malicious(tmp_path / "evil.pt", marker, how, genuine)
    with pytest.raises(
        CheckpointError,
        match=r"evil\.pt (holds objects segkit does not store \(refused, nothing "
        r"was executed\)|is not a readable checkpoint)",
    ):
        load_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize("how", MALICIOUS)
@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "run --resume"])
def test_every_command_refuses_a_malicious_checkpoint(tmp_path, copy_of_run, genuine, photo, command, how):
    marker = tmp_path / "pwned"
    target = "last.pt" if command == "run --resume" else "best.pt"
    write_malicious(copy_of_run / target, marker, how, genuine)
    args = {
        "predict": ["predict", copy_of_run, photo, "-o", tmp_path / "out"],
        "evaluate": ["evaluate", copy_of_run, "--split", "valid", "--quiet", "--no-boundary"],
        "export": ["export", copy_of_run, "--format", "torchscript", "--no-check", "-o", tmp_path / "m.pt"],
        "run --resume": ["run", "--resume", copy_of_run],
    }[command]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(copy_of_run / target) in line
    assert "refused, nothing was executed" in line or "is not a readable checkpoint" in line, line
    assert not marker.exists(), "the checkpoint's code ran"
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.pt").exists()


# -- checkpoints that do not fit ----------------------------------------------------------------------


def edited(payload: dict, **changes) -> dict:
    return {**payload, **changes}


MISMATCHES = {
    # id: (change to the genuine payload, what the one-line error must say)
    "another-model": (
        lambda p: edited(p, model_name="resnet34_unet", model_options={}),
        r"does not fit model 'resnet34_unet': .*weights missing \(first: .*unexpected weights",
    ),
    "another-width": (
        lambda p: edited(p, model_options={"base_channels": 8}),
        r"does not fit model 'unet': \d+ tensors of another shape \(first: .* \(4, 3, 3, 3\) vs "
        r"\(8, 3, 3, 3\); another number of channels or another width\?\)",
    ),
    "another-number-of-channels": (
        lambda p: edited(p, in_channels=1),
        r"does not fit model 'unet': 1 tensors of another shape \(first: .*\(4, 3, 3, 3\) "
        r"vs \(4, 1, 3, 3\)",
    ),
    "newer-format": (
        lambda p: edited(p, format=FORMAT_VERSION + 1),
        rf"has checkpoint format {FORMAT_VERSION + 1}; this segkit reads format {FORMAT_VERSION} and "
        r"older\. Upgrade segkit to read it\.",
    ),
    "model-not-installed": (
        lambda p: edited(p, model_name="unet_plus_plus"),
        r"was trained with model 'unet_plus_plus', which is not installed here",
    ),
    "a-bare-state-dict": (lambda p: p["model_state"], r"is not a segkit checkpoint \(no model_state\)"),
    "missing-a-field": (
        lambda p: {k: v for k, v in p.items() if k != "in_channels"},
        r"lacks the field 'in_channels' that segkit checkpoints carry",
    ),
}


@pytest.mark.parametrize("mismatch", list(MISMATCHES))
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_a_checkpoint_that_does_not_fit_is_one_clear_line(
    tmp_path, copy_of_run, genuine, photo, command, mismatch
):
    change, message = MISMATCHES[mismatch]
    torch.save(change(genuine), copy_of_run / "best.pt")
    args = {
        "predict": ["predict", copy_of_run / "best.pt", photo, "-o", tmp_path / "out"],
        "evaluate": ["evaluate", copy_of_run / "best.pt", "--split", "valid", "--quiet", "--no-boundary"],
        "export": [
            "export",
            copy_of_run / "best.pt",
            "--format",
            "torchscript",
            "--no-check",
            "-o",
            tmp_path / "m.pt",
        ],
    }[command]
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(copy_of_run / "best.pt") in line, line
    assert re.search(message, line), line
    # (an unknown model's line lists the installed models: 13 with segkit-smp)
    assert len(line) < 600, "one line naming the mismatch, not a wall of state_dict keys"


@pytest.mark.parametrize(
    "mismatch",
    [
        "another-width",
        "another-number-of-channels",
        "newer-format",
        "a-bare-state-dict",
        "missing-optimizer-state",
        "missing-rng-state",
        "truncated-file",
    ],
)
def test_resuming_from_a_last_pt_that_does_not_fit_is_one_clear_line(copy_of_run, mismatch):
    last = copy_of_run / "last.pt"
    genuine = load_checkpoint(last)  # last.pt, not best.pt: only it carries the optimizer and RNG state
    if mismatch == "truncated-file":
        data = last.read_bytes()
        last.write_bytes(data[: len(data) // 2])
        message = "is not a readable checkpoint"
    elif mismatch.startswith("missing-"):
        field = mismatch.removeprefix("missing-").replace("-", "_")
        torch.save({k: v for k, v in genuine.items() if k != field}, last)
        message = f"cannot be resumed from: it lacks '{field}'"
    else:
        change, message = MISMATCHES[mismatch]
        # the run folder's config.json still says unet with 4 channels and RGB input, so the edited
        # payload is built for real: a model of another width or input channels
        if mismatch in ("another-width", "another-number-of-channels"):
            import segkit

            options = {"base_channels": 8} if mismatch == "another-width" else {"base_channels": 4}
            in_channels = 1 if mismatch == "another-number-of-channels" else 3
            other = segkit.create_model("unet", in_channels=in_channels, out_channels=1, **options)
            torch.save(edited(genuine, model_state=other.state_dict()), last)
            message = r"does not fit model 'unet': \d+ tensors of another shape"
        else:
            torch.save(change(genuine), last)
    result = invoke("run", "--resume", copy_of_run)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(last) in line and re.search(message, line), line
    assert len(line) < 400, line


# -- names are looked up, never imported ------------------------------------------------------------------


@pytest.mark.parametrize("name", [EVIL_MODULE, f"{EVIL_MODULE}:build", f"{EVIL_MODULE}.build", "os.system"])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_a_model_name_in_a_checkpoint_is_never_imported(
    tmp_path, copy_of_run, genuine, photo, evil_module, command, name
):
    torch.save(edited(genuine, model_name=name), copy_of_run / "best.pt")
    args = (
        ["predict", copy_of_run, photo, "-o", tmp_path / "out"]
        if command == "predict"
        else ["export", copy_of_run, "--format", "torchscript", "--no-check", "-o", tmp_path / "m.pt"]
    )
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert f"was trained with model {name!r}, which is not installed here" in error_line(result)


# -- crafted fields ----------------------------------------------------------------------------------------


CRAFTED_FIELDS = {
    "negative-image-size": ({"image_size": -5}, "image_size -5 is not a side length"),
    "million-pixel-side": ({"image_size": 10**6}, "image_size 1000000 is not a side length"),
    "threshold-above-1": ({"threshold": 2.0}, "threshold 2.0 is not strictly between 0 and 1"),
    "normalization-not-numbers": ({"normalization": {"mean": ["a"], "std": [1]}}, "malformed fields"),
    "normalization-zero-std": ({"normalization": {"mean": [0, 0, 0], "std": [0, 1, 1]}}, "std nonzero"),
    "model-state-a-list": ({"model_state": [1, 2]}, "malformed model_state"),
    "model-state-not-tensors": ({"model_state": {"weight": 3}}, "'weight' is not a tensor"),
    "model-name-a-number": ({"model_name": 5}, "names no model"),
    "channels-a-word": ({"in_channels": "three"}, "malformed fields"),
    "options-the-model-refuses": ({"model_options": {"base_channels": -4}}, "options the installed model"),
    "width-beyond-any-memory": ({"model_options": {"base_channels": 10**12}}, "options the installed model"),
}


@pytest.mark.parametrize("field", list(CRAFTED_FIELDS))
def test_crafted_fields_in_a_checkpoint_are_one_clear_line(tmp_path, copy_of_run, genuine, photo, field):
    changes, message = CRAFTED_FIELDS[field]
    torch.save({**genuine, **changes}, copy_of_run / "best.pt")
    result = invoke("predict", copy_of_run, photo, "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert str(copy_of_run / "best.pt") in line and message in line, line


# -- crafted fields, fuzzed ----------------------------------------------------------------------------

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
    from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD

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
    from segkit.checkpoint_files import save_checkpoint
    from segkit.errors import CheckpointError, SegkitError
    from segkit.inference.predictor import load_trained_model, predict_probability

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
