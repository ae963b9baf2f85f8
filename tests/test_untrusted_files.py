"""Untrusted files: checkpoints, config files and archives may come from anyone; none may run code.

- A checkpoint crafted to execute code when unpickled is refused by every command that reads
  checkpoints (predict, evaluate, export, run --resume) with a ``CheckpointError``, and the code does
  not run (its marker file never appears). The same files *do* run their code under a plain
  ``torch.load(weights_only=False)``, which shows the test files are really malicious.
- A checkpoint for another model, another number of channels or a newer format is a one-line error
  naming the mismatch.
- Names in a config file, a run folder's config.json or a checkpoint are looked up in the plugin
  registries only: a module path there is an unknown name, and the module is never imported.
- ``segkit data download`` refuses archives whose members would land outside the target (the
  extraction rules themselves are tested in test_download.py; here, the command as a user meets it).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from data_fixtures import tar_with_members

from segkit.checkpoint import FORMAT_VERSION, load_checkpoint
from segkit.cli import cli
from segkit.errors import CheckpointError

TINY = (
    "--model unet --model-option base_channels=4 --image-size 32 --batch-size 4 "
    "--dataset-option train_size=4 "
    "--dataset-option valid_size=2 --workers 0 --quiet --callback csv"
).split()
EVIL_MODULE = "segkit_evil_module_for_tests"


def invoke(*args):
    result = CliRunner().invoke(cli, [str(arg) for arg in args])
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"segkit crashed with {result.exception!r}:\n{result.output}")
    return result


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    result = invoke("run", *TINY, "--epochs", "1", "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


@pytest.fixture
def copy_of_run(trained_run, tmp_path) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


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
    assert len(line) < 400, "one line naming the mismatch, not a wall of state_dict keys"


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


@pytest.fixture
def evil_module(tmp_path, monkeypatch) -> Path:
    """An importable module on sys.path that leaves a marker when imported."""
    marker = tmp_path / "imported"
    package = tmp_path / "on_path"
    package.mkdir()
    (package / f"{EVIL_MODULE}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "def build(**options):\n    raise SystemExit('factory ran')\n"
    )
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, EVIL_MODULE, raising=False)
    yield marker
    assert not marker.exists(), f"segkit imported {EVIL_MODULE}"
    assert EVIL_MODULE not in sys.modules


CONFIG_FILES = {
    "model-as-module-path": (f'model = "{EVIL_MODULE}"\n', rf"unknown model '{EVIL_MODULE}'"),
    "model-as-entry-point": (f'model = "{EVIL_MODULE}:build"\n', rf"unknown model '{EVIL_MODULE}:build'"),
    "model-as-os-system": ('model = "os.system"\n', r"unknown model 'os\.system'"),
    "loss-as-dotted-path": (f'loss = "{EVIL_MODULE}.build"\n', rf"unknown loss '{EVIL_MODULE}\.build'"),
    "dataset-as-module": (f'dataset = "{EVIL_MODULE}"\n', rf"unknown dataset '{EVIL_MODULE}'"),
    "callback-as-module": (f'callbacks = ["{EVIL_MODULE}"]\n', rf"unknown callback '{EVIL_MODULE}'"),
    "recipe-as-module": (f'recipe = "{EVIL_MODULE}"\n', rf"unknown recipe '{EVIL_MODULE}'"),
    "a-plugins-setting": (f'plugins = ["{EVIL_MODULE}"]\n', r"unknown setting 'plugins' from config"),
    "an-import-setting": (f'import = "{EVIL_MODULE}"\n', r"unknown setting 'import' from config"),
    "factory-in-model-options": (
        f'[model_options]\nfactory = "{EVIL_MODULE}:build"\n',
        r"model 'unet' has no option 'factory'",
    ),
}


@pytest.mark.parametrize("config", list(CONFIG_FILES))
def test_names_in_a_config_file_are_never_imported(tmp_path, evil_module, config):
    text, message = CONFIG_FILES[config]
    path = tmp_path / "run.toml"
    path.write_text(text)
    result = invoke(
        "run",
        "--config",
        path,
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--workers",
        "0",
        "--quiet",
        "--dataset-option",
        "train_size=4",
        "--dataset-option",
        "valid_size=2",
        "--out",
        tmp_path / "runs",
    )
    assert result.exit_code == 2, result.output
    assert re.search(message, error_line(result), flags=re.IGNORECASE), result.output


@pytest.mark.parametrize("key", ["model", "loss", "dataset"])
def test_names_in_a_run_folders_config_are_never_imported(copy_of_run, evil_module, key):
    config_path = copy_of_run / "config.json"
    recorded = json.loads(config_path.read_text())
    recorded["config"][key] = f"{EVIL_MODULE}:build"
    config_path.write_text(json.dumps(recorded))
    result = invoke("run", "--resume", copy_of_run)
    assert result.exit_code == 2, result.output
    assert f"unknown {key} '{EVIL_MODULE}:build'" in error_line(result).lower()


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


def test_the_plugin_switch_names_entry_points_not_modules(tmp_path, evil_module, monkeypatch):
    """SEGKIT_PLUGINS filters installed entry points; a module name there imports nothing."""
    from segkit import plugins

    monkeypatch.setenv("SEGKIT_PLUGINS", f"unet,{EVIL_MODULE}")
    plugins.reset_host()
    try:
        host = plugins.get_host()
        assert host.registry("model").names() == ["unet"]
        assert EVIL_MODULE not in host.info
    finally:
        monkeypatch.delenv("SEGKIT_PLUGINS")
        plugins.reset_host()


# -- archives: the command refuses members that escape ---------------------------------------------------


@pytest.mark.parametrize(
    "member",
    [
        ("file", "../escaped.txt", "gotcha"),
        ("symlink", "images/link.jpg", "../../escaped.txt"),
        ("hardlink", "images/link.jpg", "/etc/passwd"),
    ],
    ids=["path-traversal", "symlink-outside", "hardlink-outside"],
)
def test_data_download_refuses_escaping_members_as_one_line(tmp_path, member):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    tar_with_members(mirror / "images.tar.gz", [("dir", "images", ""), ("file", "images/a.jpg", "x"), member])
    tar_with_members(mirror / "annotations.tar.gz", [("file", "annotations/trainval.txt", "a 1 1 1\n")])
    md5 = [
        f"{name}={hashlib.md5((mirror / name).read_bytes()).hexdigest()}"
        for name in ("images.tar.gz", "annotations.tar.gz")
    ]
    target = tmp_path / "deep" / "pets"
    result = invoke(
        "data",
        "download",
        "oxford-pet",
        target,
        "--base-url",
        mirror.as_uri(),
        "--md5",
        md5[0],
        "--md5",
        md5[1],
    )
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert "refusing to extract" in line and member[1].split("/")[-1] in line, line
    assert not (tmp_path / "deep" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not (target / "images").exists()


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
