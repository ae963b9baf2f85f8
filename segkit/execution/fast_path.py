"""The fast execution path for training and inference: how a model runs, never what it computes.

Two entry points, for the engine and for prediction::

    train_model = prepare_for_training(model, device)   # in place; optimizer before or after: same params
    fast = prepare_for_inference(model, device)          # a separate, eval-only copy

and ``to_input_format(images, device, training=...)`` for each batch. What they do, and why (figures
measured on a 2-core AMD EPYC CPU, 256x256, batch 8, fp32; see ``benchmarks/README.md``):

- **channels_last** (NHWC) weights and inputs for inference, and on CUDA for training too. oneDNN's
  convolutions reorder an NCHW tensor before and after every convolution and use an NHWC one as it
  is: about 1.4x to 2x faster inference on the CPU. For CPU training it depends on the CPU (no faster
  on the 2-core EPYC, about 1.3x on a 2-core Xeon with AVX-512), and training-mode BatchNorm sums
  batch statistics less precisely in it, so by default (``"auto"``) the CPU trains in NCHW;
  ``--recipe auto`` times a training step in both layouts on the machine it plans for and chooses
  channels_last where its step is at least 15% shorter. On CUDA, channels_last lets cuDNN use
  tensor-core kernels under autocast.
- **BatchNorm folded into the convolution before it**, for inference: in eval mode BatchNorm is the
  affine map ``(x - mean) / sqrt(var + eps) * gamma + beta``, which folds exactly (up to float
  rounding) into that convolution's weights and bias, removing a pass over every feature map. Pairs
  are found by tracing submodules with ``torch.fx`` (see ``fold_batchnorm``).
- **threads** set to the physical cores on the CPU (hyper-threads share one core's vector units).
- **cuDNN autotuning** (``cudnn.benchmark``) on CUDA, where input sizes stay fixed.
- **torch.compile** only on request (``compile=True``). On the 2-core CPU it did not pay: compiled
  training was no faster (0.9x, within noise) after 250 s of compilation, and compiled inference with
  inductor's weight freezing 1.02x over the eager fast path.

Nothing here changes the architecture, the parameters' values or the state_dict of the model passed
to ``prepare_for_training``; ``prepare_for_inference`` works on a copy, whose BatchNorms are gone.
"""

from __future__ import annotations

import copy
import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from segkit.errors import UsageError

ChannelsLast = bool | Literal["auto"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


# -- threads ---------------------------------------------------------------------------------------


def physical_cores() -> int:
    """Physical CPU cores this process may run on: logical CPUs in its affinity set, counting the
    hyper-threads of one core once, and no more than its cgroup CPU quota (rounded up)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(
                (
                    topology.joinpath("physical_package_id").read_text().strip(),
                    topology.joinpath("core_id").read_text().strip(),
                )
            )
        except OSError:
            cores.add(("cpu", str(cpu)))
    count = len(cores) or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(count, math.ceil(quota))) if quota else count


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by the cgroup v2 ``cpu.max`` quota, or None when unlimited or unknown."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count to ``threads`` (default: ``physical_cores()``); returns it.

    ``threads=0`` leaves the current setting alone (for callers that manage threads themselves)."""
    if threads == 0:
        return torch.get_num_threads()
    if threads is None:
        threads = physical_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UsageError(f"threads must be a positive integer (or 0 to leave it alone), got {threads!r}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


# -- memory format -----------------------------------------------------------------------------------


def resolve_channels_last(
    requested: ChannelsLast, device: torch.device | str, training: bool = False
) -> bool:
    """Whether to run in channels_last. ``"auto"`` means: on CUDA, yes; on the CPU, for inference
    only; elsewhere (MPS), no.

    On the CPU, channels_last makes inference about 2x faster (oneDNN convolutions use it without
    reordering); training is faster on some CPUs and not on others, and BatchNorm's batch statistics
    in channels_last sum in a less precise order (tens of times the NCHW rounding error on large
    feature maps, enough to move small-batch gradients visibly): so ``"auto"`` trains the CPU in
    NCHW, and ``--recipe auto`` measures both layouts to choose (``segkit.planning.auto``).
    """
    if requested == "auto":
        kind = torch.device(device).type
        return kind == "cuda" or (kind == "cpu" and not training)
    if not isinstance(requested, bool):
        raise UsageError(f"channels_last must be true, false or 'auto', got {requested!r}")
    return requested


def to_input_format(
    images: torch.Tensor,
    device: torch.device | str,
    channels_last: ChannelsLast = "auto",
    training: bool = False,
) -> torch.Tensor:
    """Move a ``(N, C, H, W)`` batch to ``device`` in the memory format the prepared model uses
    (pass the same ``channels_last`` and ``training`` as to ``prepare_for_*``)."""
    images = images.to(device, non_blocking=True)
    if images.dim() == 4 and resolve_channels_last(channels_last, device, training):
        images = images.contiguous(memory_format=torch.channels_last)
    return images


# -- BatchNorm folding -------------------------------------------------------------------------------


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution into it, in place; returns ``model``.

    Only for inference: the model must be in eval mode (a folded BatchNorm no longer updates its
    running statistics, and its parameters no longer exist). Each folded convolution gets the
    weights ``w * gamma / sqrt(var + eps)`` and bias ``(b - mean) * gamma / sqrt(var + eps) + beta``
    (``torch.nn.utils.fusion.fuse_conv_bn_eval``) and the BatchNorm becomes ``nn.Identity``.

    A pair is folded only where it is certain: ``torch.fx`` traces a submodule (the whole model
    first, then, where tracing fails on Python control flow such as input checks, each child in
    turn), and a BatchNorm qualifies when its only input is a convolution whose output nothing else
    uses, neither module being called twice nor shared. Untraceable leaves are left as they are.
    """
    if model.training:
        raise UsageError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    uses = Counter(id(module) for _, module in model.named_modules(remove_duplicate=False))
    for conv_path, bn_path in _conv_batchnorm_pairs(model):
        conv = cast(nn.Conv2d, model.get_submodule(conv_path))  # any _CONVS type: pairs are checked
        bn = cast(nn.BatchNorm2d, model.get_submodule(bn_path))
        if uses[id(conv)] > 1 or uses[id(bn)] > 1:
            continue  # shared modules are used elsewhere, where folding would change their result
        fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.modules.conv._ConvTransposeNd))
        _replace_submodule(model, conv_path, fused)
        _replace_submodule(model, bn_path, nn.Identity())
    return model


def _replace_submodule(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, new)


def _conv_batchnorm_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """Qualified names of (convolution, BatchNorm) pairs where the BatchNorm only ever sees that
    convolution's output, found by tracing ``module`` or, failing that, each of its children."""
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:  # noqa: BLE001 - any Python the tracer cannot follow: look one level down
        pairs = []
        for name, child in module.named_children():
            pairs += _conv_batchnorm_pairs(child, f"{prefix}{name}.")
        return pairs
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or type(module.get_submodule(node.target)) not in _BATCHNORMS:
            continue
        if len(node.args) != 1 or node.kwargs or not isinstance(node.args[0], torch.fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1:
            continue
        conv, bn = module.get_submodule(str(source.target)), module.get_submodule(str(node.target))
        if not _foldable(conv, bn) or calls[source.target] != 1 or calls[node.target] != 1:
            continue
        pairs.append((f"{prefix}{source.target}", f"{prefix}{node.target}"))
    return pairs


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    # Exact types only: a subclass may override forward (weight standardisation, say), and then its
    # weights are not what the convolution applies.
    if type(conv) not in _CONVS or type(bn) not in _BATCHNORMS:
        return False
    if bn.running_mean is None or bn.running_var is None or bn.num_features != conv.out_channels:
        return False
    # fuse_conv_bn_eval scales transposed weights per output channel only for groups 1
    return not (isinstance(conv, nn.modules.conv._ConvTransposeNd) and conv.groups != 1)


# -- entry points --------------------------------------------------------------------------------------


def configure_backends(device: torch.device | str) -> None:
    """Backend switches that change speed, not results: cuDNN autotuning on CUDA."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def prepare_for_training(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: ChannelsLast = "auto",
    compile: bool = False,
    threads: int | None = None,
) -> nn.Module:
    """Ready ``model`` for fast training on ``device``, in place; returns the module to call.

    Moves the model to ``device`` (in channels_last where ``resolve_channels_last`` says so), sets
    the CPU threads (``configure_threads(threads)``) and the backend flags. The parameters stay the
    same objects, so an optimizer built before or after sees them, and ``model.state_dict()`` is
    unchanged. With ``compile=True`` the returned module is ``torch.compile(model)``: call that one,
    but save checkpoints from ``model`` (the compiled wrapper prefixes its state_dict keys).
    """
    device = torch.device(device)
    if device.type == "cpu":
        configure_threads(threads)
    configure_backends(device)
    model.to(device)
    if resolve_channels_last(channels_last, device, training=True):
        model.to(memory_format=torch.channels_last)
    # torch.compile returns an OptimizedModule (an nn.Module); its stub only says "callable".
    return cast(nn.Module, torch.compile(model)) if compile else model


def prepare_for_inference(
    model: nn.Module,
    device: torch.device | str,
    *,
    channels_last: ChannelsLast = "auto",
    fold: bool = True,
    compile: bool = False,
    threads: int | None = None,
) -> nn.Module:
    """An eval-mode copy of ``model`` for fast inference on ``device``; ``model`` is left untouched.

    The copy has its BatchNorms folded into the convolutions before them (``fold``), sits on
    ``device`` in channels_last where it pays, and has no gradients. Call it under
    ``torch.inference_mode()``. With ``compile=True`` it is compiled by ``torch.compile`` with
    inductor's weight freezing on the CPU (measured at only 1.02-1.03x there, after about 20 s of
    compilation: see the module docstring).
    """
    device = torch.device(device)
    if device.type == "cpu":
        configure_threads(threads)
    configure_backends(device)
    fast = copy.deepcopy(model).eval()
    fast.requires_grad_(False)
    if fold:
        fold_batchnorm(fast)
    fast.to(device)
    if resolve_channels_last(channels_last, device):
        fast.to(memory_format=torch.channels_last)
    if compile:
        options: dict[str, Any] | None = {"freezing": True} if device.type == "cpu" else None
        return cast(nn.Module, torch.compile(fast, options=options))
    return fast
