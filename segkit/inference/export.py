"""Exporting a trained model to ONNX or TorchScript, checked against PyTorch, with deployment notes.

The exported model maps float32 ``(N, C, H, W)`` images (normalised as in training) to ``(N, 1, H, W)``
**logits**, for any batch size, height and width. Beside it, ``<file>.json`` (``model.onnx.json``) says
what a user of the file must re-implement: channel order, scaling, normalisation mean and std, the
training input size, the sigmoid and the threshold (``deployment_notes``).

How the graph is captured, and why:

- Both formats trace the model (``torch.onnx.export(..., dynamo=False)`` with ``dynamic_axes``, and
  ``torch.jit.trace``). segkit's models pad inputs to a multiple of their stride in Python
  (``segkit.models.AnySizeModel``); tracing records that padding as computed from the input's shape
  only when the traced input needs padding on both sides, so the trace input is odd-sized
  (``trace_shape``). On torch 2.14 the torch.export-based exporter (``dynamo=True``) took about 30 s
  for a tiny UNet on 2 CPU cores (legacy: about 2 s) and, given an unpadded sample, froze the padding
  branch just the same.
- Tracing freezes any other Python branch on sizes, so every export is run on two inputs of other
  sizes and batch sizes (``check_shapes``) and compared with PyTorch: ONNX with onnxruntime when it
  is installed (``pip install segkit[export]``), TorchScript with ``torch.jit.load``. A difference
  above ``RELATIVE_TOLERANCE`` aborts the export and leaves nothing behind.
- One frozen branch is known and accepted: ``AnySizeModel`` pads by reflection, falling back to edge
  replication for images so small that reflection is impossible (a side shorter than the padding,
  i.e. a few pixels); exported models always reflect, so a runtime refuses such tiny inputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segkit.atomic_files import atomic_replace, atomic_write
from segkit.errors import SegkitError, UsageError
from segkit.inference.predictor import IMAGENET_NORMALIZATION, TrainedModel, load_trained_model
from segkit.version import __version__

FORMATS = ("onnx", "torchscript")
#: ONNX opset written by default: 17 is read by onnxruntime >= 1.14 and most other runtimes; the
#: dynamic padding needs at least 11.
DEFAULT_OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
#: Largest accepted |exported - PyTorch| logit difference, relative to max(1, largest |logit|): float32
#: kernels of two runtimes differ by rounding, about 1e-7 for a small UNet.
RELATIVE_TOLERANCE = 1e-4
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
#: File extensions that say which format a file is (``-o model.pt`` is TorchScript).
FORMAT_OF_SUFFIX = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".pth": "torchscript",
    ".torchscript": "torchscript",
}
INSTALL_HINT = "pip install segkit[export]"
Runner = Callable[[torch.Tensor], np.ndarray]


@dataclass(frozen=True)
class SizeCheck:
    """The exported model against PyTorch on one random input of ``input_shape``."""

    input_shape: tuple[int, ...]
    max_abs_diff: float
    tolerance: float
    error: str = ""  # the runtime's complaint when it could not run this input at all

    @property
    def passed(self) -> bool:
        return not self.error and self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        if self.error:
            return f"{shape}: failed: {self.error}"
        return f"{shape}: max abs diff {self.max_abs_diff:.2e} (tolerance {self.tolerance:.1e})"


@dataclass
class ExportResult:
    """What ``export_model`` wrote and how it was checked (``checks`` empty when not checked)."""

    path: Path
    notes_path: Path
    format: str
    runtime: str = ""
    checks: list[SizeCheck] = field(default_factory=list)
    note: str = ""


# -- shapes -----------------------------------------------------------------------------------------


def _odd(value: int) -> int:
    return value if value % 2 else value + 1


def trace_shape(in_channels: int, image_size: int) -> tuple[int, int, int, int]:
    """Odd height and width near the training size, so that no stride divides either side."""
    height = _odd(max(image_size, 17))
    return (1, in_channels, height, height + 2)


def check_shapes(in_channels: int, image_size: int) -> list[tuple[int, int, int, int]]:
    """Two inputs unlike the trace input: the training size, and batch 2 of another odd size."""
    size = max(image_size, 17)
    return [(1, in_channels, size, size), (2, in_channels, _odd(size * 3 // 4), _odd(size * 5 // 4))]


def sample_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """Standard-normal images: roughly what normalised photos look like to the network."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- capture ----------------------------------------------------------------------------------------


def require_onnx() -> Any:
    """The ``onnx`` module, or a ``UsageError`` saying how to install it."""
    try:
        import onnx
    except ImportError:
        message = f"ONNX export needs the onnx package, which is not installed: {INSTALL_HINT}"
        raise UsageError(message) from None
    return onnx


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the tracer's warnings about frozen Python values: the size checks catch what they warn of."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.onnx.*")
        # torch 2.14 deprecates TorchScript in favour of torch.export; it still works, and is what
        # C++ deployments without a Python runtime load.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit.*")
        yield


def write_onnx(
    model: torch.nn.Module, path: Path, sample: torch.Tensor, opset: int, notes: dict[str, Any]
) -> None:
    """Trace ``model`` on ``sample`` into an ONNX file with dynamic batch, height and width."""
    onnx = require_onnx()
    axes = {INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES}
    try:
        with _quiet_tracing(), torch.no_grad():
            torch.onnx.export(
                model,
                (sample,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
            )
    except Exception as error:  # noqa: BLE001 - the exporter raises many types; the first line explains
        raise SegkitError(f"ONNX export with opset {opset} failed: {_first_line(error)}") from None
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "segkit", json.dumps(notes)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as error:
        raise SegkitError(f"the exporter wrote an invalid ONNX model: {_first_line(error)}") from None
    onnx.save(proto, str(path))


def write_torchscript(
    model: torch.nn.Module, path: Path, sample: torch.Tensor, notes: dict[str, Any]
) -> None:
    """Trace ``model`` on ``sample`` and save it with the notes inside as ``segkit.json``."""
    try:
        with _quiet_tracing(), torch.no_grad():
            traced = torch.jit.trace(model, sample, check_trace=False)
    except Exception as error:  # noqa: BLE001 - as for ONNX
        raise SegkitError(f"TorchScript tracing failed: {_first_line(error)}") from None
    with _quiet_tracing():
        torch.jit.save(traced, str(path), _extra_files={"segkit.json": json.dumps(notes)})


# -- verification -----------------------------------------------------------------------------------


def onnx_runner(path: Path) -> tuple[Runner | None, str]:
    """A function running the ONNX file with onnxruntime, and the runtime's name; ``None`` without it."""
    try:
        import onnxruntime
    except ImportError:
        return None, ""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]

    return run, f"onnxruntime {onnxruntime.__version__}"


def torchscript_runner(path: Path) -> tuple[Runner, str]:
    with _quiet_tracing():
        module = torch.jit.load(str(path), map_location="cpu")

    def run(images: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return module(images).numpy()

    return run, f"torch {torch.__version__} (torch.jit.load)"


def compare_with_pytorch(
    model: torch.nn.Module, run: Runner, shapes: Sequence[Sequence[int]]
) -> list[SizeCheck]:
    """Run ``model`` and the exported ``run`` on a random input of each shape; one ``SizeCheck`` each."""
    checks = []
    for seed, shape in enumerate(shapes, start=1):
        images = sample_input(shape, seed)
        with torch.no_grad():
            expected = model(images).float().numpy()
        tolerance = RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
        try:
            actual = np.asarray(run(images))
        except Exception as error:  # noqa: BLE001 - a runtime refusing a size is a failed check
            checks.append(SizeCheck(tuple(shape), math.inf, tolerance, _first_line(error)))
            continue
        if actual.shape != expected.shape:
            checks.append(
                SizeCheck(
                    tuple(shape),
                    math.inf,
                    tolerance,
                    f"output shape {actual.shape}, PyTorch gives {expected.shape}",
                )
            )
            continue
        checks.append(SizeCheck(tuple(shape), float(np.abs(actual - expected).max()), tolerance))
    return checks


# -- notes ------------------------------------------------------------------------------------------


def resolve_normalization(value: Any) -> tuple[dict[str, list[float]], str]:
    """The mean and std a checkpoint's ``normalization`` field stands for, and a note when assumed.

    Datasets record a ``{"mean": [...], "std": [...]}`` dict or the name ``"imagenet"``; a checkpoint
    without the field is read as ImageNet's, as ``segkit predict`` does.
    """
    if isinstance(value, dict) and "mean" in value and "std" in value:
        return {"mean": [float(v) for v in value["mean"]], "std": [float(v) for v in value["std"]]}, ""
    if isinstance(value, str) and value.lower() == "imagenet":
        return dict(IMAGENET_NORMALIZATION), ""
    if value is None:
        return dict(IMAGENET_NORMALIZATION), "the checkpoint records no normalization; ImageNet's is assumed"
    raise SegkitError(f"the checkpoint's normalization {value!r} is neither a mean/std dict nor 'imagenet'")


def deployment_notes(
    trained: TrainedModel, export_format: str, file_name: str, opset: int | None
) -> dict[str, Any]:
    """What a program using the exported file must do itself, as a JSON-ready dict."""
    checkpoint = trained.checkpoint
    normalization, assumed = resolve_normalization(checkpoint.get("normalization"))
    channels = trained.in_channels
    size = trained.image_size
    order = "RGB" if channels == 3 else f"the {channels} channels in the order of the training dataset"
    return {
        "file": file_name,
        "format": export_format,
        **({"onnx_opset": opset} if export_format == "onnx" else {}),
        "segkit_version": __version__,
        "model": {"name": trained.model_name, "options": dict(checkpoint.get("model_options") or {})},
        "checkpoint": {
            "path": str(trained.path),
            "epoch": checkpoint.get("epoch"),
            "dataset": checkpoint.get("dataset"),
            # A --folds parent: one model whose logits are those of its folds' averaged probabilities.
            **({"ensemble": checkpoint["ensemble"]} if "ensemble" in checkpoint else {}),
        },
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", channels, "height", "width"],
            "dtype": "float32",
            "channel_order": order,
            "layout": "channels first (N, C, H, W)",
            "scaling": "pixel values divided by 255, giving [0, 1]",
            "normalization": {
                **normalization,
                "formula": "(x - mean[c]) / std[c] per channel, after scaling",
            },
            "training_image_size": [size, size],
            "resize": f"resize photos to {size}x{size} (bilinear) as in training; any size runs, but the "
            "model learned at this one",
            **({"note": assumed} if assumed else {}),
        },
        "output": {
            "name": OUTPUT_NAME,
            **trained.task.output_description(),
            "postprocess": [
                *(
                    [
                        "average the logits with those of the horizontally flipped photo, flipped back "
                        "(the run's recipe chose flip test-time augmentation)"
                    ]
                    if trained.tta
                    else []
                ),
                "resize the logits bilinearly to the photo's size (as segkit predict does)",
                *trained.task.postprocessing_lines(),
                *(["fill the holes inside the mask"] if trained.postprocess.get("fill_holes") else []),
                *(
                    ["keep only the largest connected component (8-connectivity)"]
                    if trained.postprocess.get("keep_largest")
                    else []
                ),
            ],
        },
        "dynamic_axes": {str(axis): name for axis, name in DYNAMIC_AXES.items()},
    }


# -- the command ------------------------------------------------------------------------------------


def default_output(checkpoint_path: Path, export_format: str) -> Path:
    """``run/best.pt`` -> ``run/best.onnx`` or ``run/best.torchscript.pt``; a ``--folds`` parent (a
    folder: its folds' ensemble) -> ``parent/ensemble.onnx`` or ``parent/ensemble.torchscript.pt``."""
    if checkpoint_path.is_dir():
        return checkpoint_path / f"ensemble{SUFFIXES[export_format]}"
    return checkpoint_path.with_name(checkpoint_path.stem + SUFFIXES[export_format])


def notes_path_for(out: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``, ``model.pt`` -> ``model.pt.json``: the whole file name, so
    that ``model.onnx`` and ``model.pt`` side by side each keep their own notes."""
    return out.with_name(out.name + ".json")


def export_model(
    source: Path,
    out: str | os.PathLike | None = None,
    export_format: str = "onnx",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    shapes: Sequence[Sequence[int]] | None = None,
) -> ExportResult:
    """Export the checkpoint (or run folder's best.pt) ``source`` and write its deployment notes.

    ``out`` is the file to write, or a folder (existing, or named with a trailing ``/``) to write the
    default name into (default: beside the checkpoint); a file name whose extension names the other
    format is refused (``format_for_output``). With ``check``, the export is compared with PyTorch on
    ``shapes`` (default ``check_shapes``) and refused when it differs; ONNX checks are skipped, with a
    note, when onnxruntime is missing. Raises ``CheckpointError`` for a missing or unreadable checkpoint,
    ``UsageError`` for a bad format or output path or a missing onnx package.
    """
    if export_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {export_format!r}")
    trained = load_trained_model(Path(source), device="cpu")  # a bad checkpoint is named first
    blocker = getattr(trained.model, "export_blocker", None)  # the model contract's optional attribute
    if blocker:
        raise UsageError(f"{trained.model_name} cannot be exported with dynamic height and width: {blocker}")
    if export_format == "onnx":
        require_onnx()
    out = _output_path(trained.path, out, export_format)
    notes_path = notes_path_for(out)
    notes = deployment_notes(trained, export_format, out.name, opset if export_format == "onnx" else None)
    model = trained.model.eval()
    sample = sample_input(trace_shape(trained.in_channels, trained.image_size))
    result = ExportResult(out, notes_path, export_format)
    with atomic_replace(out) as temp:  # a failed export or check leaves ``out`` untouched
        if export_format == "onnx":
            write_onnx(model, temp, sample, opset, notes)
            run, result.runtime = onnx_runner(temp)
        else:
            write_torchscript(model, temp, sample, notes)
            run, result.runtime = torchscript_runner(temp)
        if not check:
            result.note = "not checked against PyTorch (--no-check)"
        elif run is None:
            result.note = f"not checked against PyTorch: onnxruntime is not installed ({INSTALL_HINT})"
        else:
            result.checks = compare_with_pytorch(
                model, run, shapes or check_shapes(trained.in_channels, trained.image_size)
            )
            failed = [c for c in result.checks if not c.passed]
            if failed:
                raise SegkitError(
                    f"the {export_format} export of {trained.path} does not match PyTorch on "
                    f"{failed[0].describe()}; the model probably decides something from the input size in "
                    f"Python, which tracing freezes. Nothing was written (--no-check writes it anyway)."
                )
    notes["verification"] = {
        "runtime": result.runtime if result.checks else "",
        "checks": [
            {"input_shape": list(c.input_shape), "max_abs_diff": c.max_abs_diff} for c in result.checks
        ],
        "note": result.note,
    }
    text = json.dumps(notes, indent=2) + "\n"
    atomic_write(notes_path, lambda handle: handle.write(text.encode()))
    return result


def names_a_folder(out: str | os.PathLike | None) -> bool:
    """``-o newdir/`` (a trailing separator) or an existing folder: write the default name into it."""
    if out is None:
        return False
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def format_for_output(out: str | os.PathLike | None, requested: str | None) -> str:
    """The export format: ``requested`` (``--format``), else the one ``out``'s extension names, else
    ONNX for a folder or no ``out``. An extension naming the other format than ``requested``, or no
    known extension without ``--format``, is a ``UsageError``."""
    if requested is not None and requested not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {requested!r}")
    if out is None or names_a_folder(out):
        return requested or "onnx"
    suffix = Path(os.fspath(out)).suffix.lower()
    implied = FORMAT_OF_SUFFIX.get(suffix)
    if requested is None and implied is None:
        raise UsageError(
            f"-o {os.fspath(out)}: cannot tell the format from the extension {suffix or '(none)'!r}; "
            "name the file .onnx or .pt (TorchScript), or give --format"
        )
    if requested is not None and implied is not None and implied != requested:
        raise UsageError(
            f"-o {os.fspath(out)} is named for {implied} (its extension), but --format is {requested}; "
            "change one of them"
        )
    return requested or implied or "onnx"


def _output_path(checkpoint_path: Path, out: str | os.PathLike | None, export_format: str) -> Path:
    format_for_output(out, export_format)  # a name that says another format is refused
    if out is None:
        out = default_output(checkpoint_path, export_format)
    elif names_a_folder(out):
        folder = Path(os.fspath(out))
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"-o {os.fspath(out)}: {folder} exists and is not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UsageError(f"-o {os.fspath(out)}: cannot create it: {error.strerror or error}") from None
        out = folder / default_output(checkpoint_path, export_format).name
    out = Path(out)
    if out.suffix == ".json":
        raise UsageError(f"-o {out}: .json names are for the deployment notes; give the model another suffix")
    if checkpoint_path.resolve() in (out.resolve(), notes_path_for(out).resolve()):
        raise UsageError(f"-o {out} would overwrite the checkpoint {checkpoint_path}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"-o {out}: cannot create {out.parent}: {error.strerror or error}") from None
    return out


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
