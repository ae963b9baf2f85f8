"""Starting a run from saved weights (``segkit run --init-from FILE``): keep what fits, re-initialise
the rest.

``FILE`` is a segkit checkpoint (a run's ``best.pt`` or ``last.pt``, or the run folder itself) or a
plain state dict saved with ``torch.save(model.state_dict(), path)`` (also one wrapped as
``{"state_dict": ...}`` or ``{"model_state": ...}``), always read with ``torch.load(weights_only=True)``:
a file crafted to run code is refused without running it.

Every tensor of the model whose name and shape match one in the file is copied; the others keep the
weights the model was built with (random, or a pretrained encoder's), for example the last layer of a
head trained for another number of classes. Names may differ by a wrapper's prefix (``module.`` from
DistributedDataParallel, ``network.`` from ``segkit.models.PadToMultiple`` and segkit-smp's models):
the alignment of prefixes that fits the most tensors is used. A file of which no tensor fits is a
``CheckpointError`` saying so.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segkit.checkpoint_files import load_checkpoint
from segkit.errors import CheckpointError

#: How many skipped names the summary lists before "and N more".
LISTED = 8


@dataclass
class InitReport:
    """What ``init_from_file`` did: ``loaded`` names (the model's), ``skipped`` (the model's names with
    why: another shape, or absent from the file) and ``unused`` (names of the file no tensor of the
    model has)."""

    path: Path
    total: int
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """Two or three lines: how many tensors were loaded, which were skipped and why."""
        lines = [f"Initialised from {self.path}: loaded {len(self.loaded)} of {self.total} tensors"]
        if self.skipped:
            shown = ", ".join(f"{name} ({reason})" for name, reason in self.skipped[:LISTED])
            more = f", and {len(self.skipped) - LISTED} more" if len(self.skipped) > LISTED else ""
            lines.append(f"  re-initialised {len(self.skipped)}: {shown}{more}")
        if self.unused:
            shown = ", ".join(self.unused[:LISTED])
            more = f", and {len(self.unused) - LISTED} more" if len(self.unused) > LISTED else ""
            lines.append(f"  not used from the file {len(self.unused)}: {shown}{more}")
        return "\n".join(lines)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a segkit checkpoint or a plain state dict, read with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        return dict(load_checkpoint(path)["model_state"])
    if not path.is_file():
        raise CheckpointError(f"--init-from {path}: no such file")
    try:
        payload: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), "")
        raise CheckpointError(
            f"--init-from {path} holds objects other than tensors (refused, nothing was executed)"
            + (f": {reason}" if reason else "")
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        raise CheckpointError(f"--init-from {path} is not a readable weights file: {reason}") from None
    if isinstance(payload, dict) and "model_state" in payload:
        payload = payload["model_state"]  # a segkit checkpoint
    elif isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict):
        raise CheckpointError(
            f"--init-from {path} holds a {type(payload).__name__}, not a state dict or segkit checkpoint"
        )
    tensors = {str(key): value for key, value in payload.items() if isinstance(value, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"--init-from {path} holds no tensors")
    return tensors


def _prefixes(names: list[str]) -> set[str]:
    """The empty prefix and every first name component followed by a dot (``network.``, ``module.``)."""
    return {""} | {name.split(".", 1)[0] + "." for name in names if "." in name}


def align(
    model_state: dict[str, torch.Tensor], file_state: dict[str, torch.Tensor]
) -> tuple[dict[str, str], dict[str, str]]:
    """Model name -> file name for the prefix swap (strip one prefix from the file's names, add one of
    the model's) that pairs the most tensors of equal name and shape: those pairs, and every pair of
    equal names under that swap (the shapes of some may differ)."""
    best: dict[str, str] = {}
    best_pairs: dict[str, str] = {}
    for strip in sorted(_prefixes(list(file_state))):  # "" first: with a tie, names as they are
        stripped = {name[len(strip) :]: name for name in file_state if name.startswith(strip)}
        for add in sorted(_prefixes(list(model_state))):
            pairs = {
                name: stripped[name[len(add) :]]
                for name in model_state
                if name.startswith(add) and name[len(add) :] in stripped
            }
            fitting = {
                name: source
                for name, source in pairs.items()
                if file_state[source].shape == model_state[name].shape
            }
            if len(fitting) > len(best):
                best, best_pairs = fitting, pairs
    return best, best_pairs


def init_from_file(model: nn.Module, path: Path) -> InitReport:
    """Copy into ``model`` every tensor of the file at ``path`` whose name and shape fit; see the
    module docstring. Raises ``CheckpointError`` when none fits."""
    path = Path(path)
    file_state = read_state_dict(path)
    model_state = model.state_dict()
    fitting, pairs = align(model_state, file_state)
    report = InitReport(path, len(model_state))
    if not fitting:
        example = next(iter(file_state))
        raise CheckpointError(
            f"--init-from {path}: none of its {len(file_state)} tensors fits the model by name and shape "
            f"(e.g. the file's {example} {tuple(file_state[example].shape)}); is it the weights of another "
            "architecture?"
        )
    for name, tensor in model_state.items():
        if name in fitting:
            report.loaded.append(name)
        elif name in pairs:
            shape = tuple(file_state[pairs[name]].shape)
            report.skipped.append((name, f"shape {shape} in the file, {tuple(tensor.shape)} here"))
        else:
            report.skipped.append((name, "not in the file"))
    paired = set(pairs.values())
    report.unused = [name for name in file_state if name not in paired]
    with torch.no_grad():
        for name, source in fitting.items():
            model_state[name].copy_(file_state[source])
    return report
