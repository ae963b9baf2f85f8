"""Where and how the computation runs (segkit.execution.device): the device and mixed-precision choices,
autocast, and fp16's GradScaler path through the training step.

Most of it runs on the CPU: the choices only read what torch says is available (faked here), and
the GradScaler path runs on the CPU too (fp16 autocast and a CPU scaler). ``gpu``-marked tests run
bf16 and fp16 on a real GPU and train, resume and evaluate there; they skip, saying so, without CUDA.
"""

from __future__ import annotations

import copy
import csv
import json
import math

import pytest
import torch
import torch.nn.functional as F
from fixtures import invoke, only_run_dir, run_cli, tiny_run
from torch import nn

import segkit
from segkit.checkpoint_files import load_checkpoint
from segkit.engine.step import TrainingStep
from segkit.errors import UsageError
from segkit.execution.device import autocast, resolve_amp, resolve_device
from segkit.task import BinaryTask

CPU = torch.device("cpu")
CUDA = torch.device("cuda")  # a device object only: nothing below touches a GPU unless gpu-marked


# -- resolve_device -------------------------------------------------------------------------------------


def test_auto_is_the_cpu_where_there_is_no_accelerator():
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize(
    "requested, message",
    [
        ("cuda", "--device cuda was asked for, but no CUDA GPU is available; use --device cpu"),
        ("cuda:1", "--device cuda was asked for, but no CUDA GPU is available"),
        ("mps", "--device mps was asked for, but MPS is not available; use --device cpu"),
        ("gpu0", "--device 'gpu0' is not a device name (auto, cpu, cuda, cuda:1, mps)"),
        ("", "is not a device name"),
    ],
)
def test_a_device_that_is_missing_or_misspelt_is_a_usage_error(requested, message):
    with pytest.raises(UsageError) as caught:
        resolve_device(requested)
    assert message in str(caught.value)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_a_gpu_index_beyond_the_gpus_torch_sees_is_a_usage_error(monkeypatch, count):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    assert resolve_device(f"cuda:{count - 1}") == torch.device("cuda", count - 1)
    assert resolve_device("cuda") == CUDA  # no index: the current GPU, whichever it is
    with pytest.raises(UsageError) as caught:
        resolve_device(f"cuda:{count}")
    last = count - 1
    expected = f"--device cuda:{count} asks for GPU {count}, but torch sees {count} (cuda:0 to cuda:{last})"
    assert expected in str(caught.value)


def test_a_gpu_index_beyond_the_gpus_is_one_line_from_segkit_run(monkeypatch, tmp_path):
    from fixtures import run_cli, tiny_run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = [arg for arg in tiny_run(epochs=1) if arg not in ("--device", "cpu")]
    result = run_cli("run", *args, "--device", "cuda:3", "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    assert "--device cuda:3 asks for GPU 3, but torch sees 1" in result.output
    assert "Traceback" not in result.output


# -- resolve_amp ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "requested, bf16_supported, expected",
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float16),  # an older GPU: fp16, with a GradScaler
        ("bf16", True, torch.bfloat16),
        ("bf16", False, torch.bfloat16),  # asked for: torch emulates or refuses, not segkit
        ("fp16", True, torch.float16),
        ("off", True, None),
    ],
)
def test_mixed_precision_on_cuda(monkeypatch, requested, bf16_supported, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_supported)
    assert resolve_amp(requested, CUDA) == expected


@pytest.mark.parametrize("device", [CPU, torch.device("mps")])
def test_mixed_precision_elsewhere_is_off_and_cannot_be_forced(device):
    assert resolve_amp("auto", device) is None
    assert resolve_amp("off", device) is None
    for requested in ("bf16", "fp16"):
        with pytest.raises(UsageError, match=f"--amp {requested} needs a CUDA device; this run is on"):
            resolve_amp(requested, device)


def test_autocast_is_a_no_op_without_a_dtype_and_casts_with_one():
    model = nn.Conv2d(3, 2, 3)
    images = torch.randn(1, 3, 6, 6)
    with autocast(CPU, None):
        assert model(images).dtype == torch.float32
    with autocast(CPU, torch.bfloat16):
        assert model(images).dtype == torch.bfloat16


# -- the GradScaler path (fp16), on the CPU ------------------------------------------------------------


class _InfGradient(torch.autograd.Function):
    """Identity forward, infinite gradients backward: an fp16 overflow in the backward pass."""

    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, gradient):
        return torch.full_like(gradient, math.inf)


class OverflowingBCE(nn.Module):
    def __init__(self):
        super().__init__()
        self.overflow = False

    def forward(self, logits, target, ignore=None):
        loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        return _InfGradient.apply(loss) if self.overflow else loss


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))


def one_batch(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(4, 3, 8, 8, generator=generator)
    masks = (torch.rand(4, 1, 8, 8, generator=generator) > 0.5).float()
    return {"image": images, "mask": masks, "name": ["a", "b", "c", "d"]}


def fp16_step(model: nn.Module, loss_fn=None) -> TrainingStep:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainingStep(
        model,
        loss_fn or OverflowingBCE(),
        optimizer,
        BinaryTask(),
        device=CPU,
        amp_dtype=torch.float16,
        channels_last=False,
    )


def test_fp16_uses_a_grad_scaler_and_bf16_does_not():
    assert fp16_step(small_model()).scaler is not None and fp16_step(small_model()).scaler.is_enabled()
    bf16 = TrainingStep(
        small_model(),
        OverflowingBCE(),
        torch.optim.SGD(small_model().parameters(), lr=0.1),
        BinaryTask(),
        device=CPU,
        amp_dtype=torch.bfloat16,
        channels_last=False,
    )
    assert bf16.scaler is None and bf16.state_dict() == {}


def test_a_scaled_fp16_step_updates_the_weights_like_a_plain_step():
    """The scaler multiplies the loss before backward and divides the gradients before the update:
    the weights move as plain SGD with the gradient of the fp16-autocast forward pass."""
    model = small_model()
    reference = copy.deepcopy(model)
    step = fp16_step(model)
    step.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)  # no overflow at this scale
    batch = one_batch()
    result = step([batch])
    assert not result.skipped and math.isfinite(result.loss)
    with torch.autocast("cpu", dtype=torch.float16):
        logits = reference(batch["image"])
    F.binary_cross_entropy_with_logits(logits.float(), batch["mask"]).backward()
    with torch.no_grad():
        for trained, plain in zip(model.parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(trained, plain - 0.1 * plain.grad, rtol=1e-3, atol=1e-4)
    assert step.scaler.get_scale() == 256.0  # no overflow: the scale stays (it grows every 2000 steps)


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_lowered():
    model = small_model()
    before = [parameter.detach().clone() for parameter in model.parameters()]
    loss_fn = OverflowingBCE()
    loss_fn.overflow = True
    step = fp16_step(model, loss_fn)
    scale = step.scaler.get_scale()
    result = step([one_batch()])
    assert math.isfinite(result.loss)  # the loss was finite: not the NaN policy's business
    for parameter, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(parameter.detach(), old), "an overflowing step must leave the weights alone"
    assert step.scaler.get_scale() == scale / 2


def test_the_scaler_state_round_trips_through_a_checkpoint():
    model = small_model()
    loss_fn = OverflowingBCE()
    loss_fn.overflow = True
    step = fp16_step(model, loss_fn)
    for _ in range(3):
        step([one_batch()])
    state = step.state_dict()
    assert state["scale"] == 65536.0 / 8
    restored = fp16_step(small_model())
    restored.load_state_dict(state)
    assert restored.scaler.get_scale() == step.scaler.get_scale()


# -- on a real GPU ------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_a_mixed_precision_step_on_cuda(dtype):
    device = torch.device("cuda")
    model = small_model().to(device)
    loss_fn = segkit.create_loss("bce_dice")
    step = TrainingStep(
        model,
        loss_fn,
        torch.optim.SGD(model.parameters(), lr=0.1),
        BinaryTask(),
        device=device,
        amp_dtype=dtype,
        channels_last=True,
    )
    assert (step.scaler is not None) == (dtype == torch.float16)
    before = [parameter.detach().clone() for parameter in model.parameters()]
    with autocast(device, dtype):
        assert model(one_batch()["image"].to(device)).dtype == dtype
    result = step([one_batch()])
    assert not result.skipped and math.isfinite(result.loss) and 0 <= result.score <= 1
    assert any(not torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before, strict=True))
    assert all(torch.isfinite(p).all() for p in model.parameters())


GPU_RUN = [*tiny_run(batch_size=4, train_size=8, valid_size=4, callbacks=("csv",)), "--device", "cuda"]


@pytest.mark.gpu
def test_a_run_on_cuda_trains_in_mixed_precision_and_resumes(tmp_path):
    """What holds on a GPU: the run resolves CUDA, mixed precision and channels_last, its records
    are complete and finite, and a resumed run finishes with every epoch recorded. (cuDNN autotuning
    and bf16 make two GPU runs differ slightly: no exact resume equality here, unlike on the CPU.)"""
    result = invoke("run", *GPU_RUN, "--epochs", "2", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = only_run_dir(tmp_path / "runs")
    resolved = json.loads((run_dir / "config.json").read_text())["resolved"]
    assert resolved["device"].startswith("cuda") and resolved["channels_last"] is True
    expected_amp = "torch.bfloat16" if torch.cuda.is_bf16_supported() else "torch.float16"
    assert resolved["amp"] == expected_amp
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert all(math.isfinite(float(row[key])) for row in rows for key in ("train_loss", "valid_dice"))
    # Three more epochs from last.pt.
    resumed = invoke("run", "--resume", run_dir, "--epochs", "3")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 3


@pytest.mark.gpu
def test_evaluate_on_cuda_agrees_with_the_cpu(tmp_path, tiny_checkpoint):
    """The same checkpoint scored on the GPU and on the CPU: fp32 on both (evaluate does not autocast),
    so only TF32 and kernel choice differ, a pixel or two of a barely trained model."""
    figures = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        result = run_cli(
            "evaluate",
            tiny_checkpoint,
            "--split",
            "valid",
            "--no-boundary",
            "-q",
            "--device",
            device,
            "-o",
            out,
        )
        assert result.exit_code == 0, result.output
        figures[device] = json.loads((out / "summary.json").read_text())["network_resolution"]
    assert figures["cuda"]["images"] == figures["cpu"]["images"]
    assert figures["cuda"]["dice_per_image"] == pytest.approx(figures["cpu"]["dice_per_image"], abs=0.02)


def test_the_gpu_check_script_stops_with_exit_2_where_torch_sees_no_gpu(tmp_path):
    """benchmarks/gpu_check.sh asks the interpreter it is given how many GPUs torch sees; with none it
    says so and writes no table (a stand-in interpreter answers 0, so this holds on a GPU machine too)."""
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    stand_in = tmp_path / "python"
    stand_in.write_text("#!/bin/sh\necho 0\n")
    stand_in.chmod(0o755)
    out = tmp_path / "out"
    result = subprocess.run(
        ["bash", str(script), str(out)],
        env={"PATH": "/usr/bin:/bin", "PYTHON": str(stand_in)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "torch sees no CUDA GPU here" in result.stderr
    assert not (out / "summary.md").exists()
