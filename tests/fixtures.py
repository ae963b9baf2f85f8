"""Helpers shared by the test files (a plain module: ``from fixtures import tiny_run, invoke``).

- ``tiny_run(...)``: the arguments of a ``segkit run`` that trains a tiny UNet on the CPU in seconds;
- ``run_cli(...)`` and ``invoke(...)``: ``segkit ...`` in this process through click's test runner
  (``invoke`` also fails the test on a traceback or a crash); ``evaluate`` and ``predict`` get
  ``--device cpu`` unless a test names a device;
- ``only_run_dir``, ``error_line`` and ``expect_named_failure``: reading what a command left;
- constants several files share (``EVIL_MODULE``, the tiny Oxford-IIIT Pet layout's size and names);
- hypothesis settings and strategies for fuzzing what a user types (``KEY=VALUE`` options).

Pytest fixtures (``real_sample``, the once-trained runs, ...) live in conftest.py; generated image
files and datasets in data_fixtures.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import segkit
from segkit.callbacks import Callback
from segkit.cli import cli

#: A module a test puts on sys.path (conftest's ``evil_module``) that segkit must never import.
EVIL_MODULE = "segkit_evil_module_for_tests"
#: The tiny Oxford-IIIT Pet layout of conftest's ``tiny_pets``: picture size (not square and not a
#: multiple of 32: predictions must come back at this size) and the names in its test split.
PETS_SIZE = (36, 52)
PETS_TEST_NAMES = [f"cat_{i}" for i in range(6)]


def tiny_run(
    *,
    train_size: int | None = None,
    valid_size: int | None = None,
    image_size: int = 32,
    base_channels: int = 4,
    model: str | None = "unet",
    callbacks: tuple[str, ...] = (),
    quiet: bool = True,
    **flags: object,
) -> list[str]:
    """Arguments for ``segkit run``: a UNet of width ``base_channels`` at ``image_size`` pixels, no
    DataLoader workers, always on the CPU (the suite must not train on a GPU where there is one).

    ``train_size``/``valid_size`` become ``--dataset-option``s; ``model=None`` leaves the model (and
    its width) to a config file; ``callbacks``, when given, are exactly the callbacks that run
    (``--callback`` for each, ``--no-callback`` for the defaults left out); every other keyword is one
    flag, in the order given: ``batch_size=4`` is ``--batch-size 4``.
    """
    args = ["--device", "cpu"]
    if model is not None:
        args += ["--model", model, "--model-option", f"base_channels={base_channels}"]
    args += ["--image-size", str(image_size)]
    for name, value in flags.items():
        args += [f"--{name.replace('_', '-')}", str(value)]
    for name, size in (("train_size", train_size), ("valid_size", valid_size)):
        if size is not None:
            args += ["--dataset-option", f"{name}={size}"]
    args += ["--workers", "0"]
    if quiet:
        args.append("--quiet")
    if callbacks:  # exactly these: the others among the defaults (csv, excel) are left out
        defaults = [c.name for c in segkit.list_components("callback") if c.metadata.get("default")]
        for callback in callbacks:
            if callback not in defaults:
                args += ["--callback", callback]
        for callback in defaults:
            if callback not in callbacks:
                args += ["--no-callback", callback]
    return args


#: Commands that take ``--device``: the suite runs them on the CPU (``run`` through ``tiny_run``).
INFERENCE_COMMANDS = ("evaluate", "predict")


def on_the_cpu(args: list[str]) -> list[str]:
    """``args`` of an ``evaluate`` or ``predict`` with ``--device cpu`` added, unless they choose a
    device (or ask for help); any other command's unchanged."""
    if not args or args[0] not in INFERENCE_COMMANDS or {"--device", "--help", "-h"} & set(args):
        return args
    return [*args, "--device", "cpu"]


def run_cli(*args: object) -> Result:
    """``segkit ARGS`` through click's test runner; arguments may be paths or numbers. ``evaluate``
    and ``predict`` run on the CPU unless the arguments name a device (see ``on_the_cpu``)."""
    return CliRunner().invoke(cli, on_the_cpu([str(arg) for arg in args]))


def invoke(*args: object) -> Result:
    """``run_cli``, failing the test if segkit printed a traceback or crashed (raised anything but
    SystemExit): whatever the input, segkit ends with a result or one ``Error:`` line."""
    result = run_cli(*args)
    assert "Traceback" not in result.output, result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"segkit crashed with {result.exception!r}:\n{result.output}")
    return result


def only_run_dir(out: Path) -> Path:
    """The one run folder a ``segkit run --out OUT`` made (fails if there is not exactly one)."""
    runs = [path for path in out.iterdir() if path.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def error_line(result: Result) -> str:
    """The one ``Error: ...`` line of a command's output (fails if there is not exactly one)."""
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def expect_named_failure(result: Result, path: Path, message: str, exit_code: int = 1) -> None:
    """The command failed with ``exit_code`` and one ``Error:`` line naming ``path`` and matching
    the regex ``message``."""
    assert result.exit_code == exit_code, result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.output
    assert str(path) in error_lines[0], result.output
    assert re.search(message, error_lines[0]), result.output


# -- fuzzing what a user types -------------------------------------------------------------------------

#: Hypothesis settings of the option and config-file fuzzers.
QUICK = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

#: Option names: Python identifiers of up to 13 characters.
option_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
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


# -- a Ctrl-C at a chosen moment ---------------------------------------------------------------------


class InterruptAfterEpoch2(Callback):
    """Ctrl-C arriving during epoch 3, after epoch 2 was checkpointed."""

    def on_epoch_end(self, context, metrics):
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt


class InterruptPlugin:
    @segkit.hookimpl
    def register_callbacks(self, register):
        register("interrupt_after_2", lambda run_dir: InterruptAfterEpoch2(), description="test")
