"""A whole training epoch, start-up to validation, through ``segkit run``'s engine and written plainly.

The plain epoch is the seed report's way: a ``DataLoader`` with default settings (no worker
processes), the eager fp32 NCHW model, ``sigmoid`` then ``nn.BCELoss`` plus a soft Dice term, Adam,
then validation in eval mode under ``torch.no_grad`` with per-image Dice. The segkit epoch is
``segkit.engine.trainer.fit`` with ``epochs=1`` and the same model, data, batch, image size, loss
weights and optimizer: its worker processes, logits-based loss, validation fast path (BatchNorm
folded, channels_last), checkpoints and recorders included. Both build their datasets and model
inside the timed call (start-up counts) and train on the real 300-image Pet sample (270 train /
30 valid photos, the "default" augmentation).

Run with ``python -m pytest benchmarks/test_epoch.py`` (``--bench-models`` picks the models, default
``resnet34_unet``; ``--bench-epoch-rounds`` the interleaved rounds, default 1 since an epoch at
256x256 takes minutes on a CPU). ``extra_info`` holds both wall times and their ratio.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

import segkit

REAL_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "oxford-iiit-pet-mini"
IMAGE_SIZE = 256
BATCH_SIZE = 32  # the report's
DEFAULT_MODELS = "resnet34_unet"  # unet at 256x256 takes about half an hour per epoch on 2 cores

pytestmark = pytest.mark.skipif(not REAL_SAMPLE.is_dir(), reason=f"real sample not found at {REAL_SAMPLE}")


def plain_epoch(model_name: str, device: torch.device) -> float:
    """One epoch as the report wrote it; returns the validation Dice (per-image mean, 0.5)."""
    torch.manual_seed(0)
    common = {"root": REAL_SAMPLE, "image_size": IMAGE_SIZE}
    train = segkit.create_dataset("oxford_pet", split="train", augment="default", **common)
    valid = segkit.create_dataset("oxford_pet", split="valid", augment="none", **common)
    model = segkit.create_model(model_name, in_channels=3, out_channels=1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    bce = torch.nn.BCELoss()
    model.train()
    for batch in DataLoader(train, batch_size=BATCH_SIZE, shuffle=True):
        images, masks = batch["image"].to(device), batch["mask"].to(device)
        optimizer.zero_grad()
        probability = torch.sigmoid(model(images))
        overlap = (probability * masks).sum()
        dice_loss = 1 - (2 * overlap + 1) / (probability.sum() + masks.sum() + 1)
        loss = bce(probability, masks) + dice_loss
        loss.backward()
        optimizer.step()
        loss.item()  # the report logged every step's loss
    model.eval()
    scores = []
    with torch.no_grad():
        for batch in DataLoader(valid, batch_size=BATCH_SIZE):
            predicted = torch.sigmoid(model(batch["image"].to(device))) > 0.5
            truth = batch["mask"].to(device) > 0.5
            for p, t in zip(predicted, truth, strict=True):
                total = p.sum() + t.sum()
                scores.append(1.0 if total == 0 else float(2 * (p & t).sum() / total))
    return sum(scores) / len(scores)


def segkit_epoch(model_name: str, device: torch.device, out: Path) -> float:
    from segkit.config.resolve import resolve_run_config
    from segkit.engine.trainer import fit

    flags = {
        "model": model_name,
        "loss": "bce_dice",
        "dataset": "oxford_pet",
        "data_path": str(REAL_SAMPLE),
        "image_size": IMAGE_SIZE,
        "batch_size": BATCH_SIZE,
        "epochs": 1,
        "device": device.type,
        "out": str(out),
        "quiet": True,
    }
    config = resolve_run_config(flags, None, "seed")
    return fit(config, echo=lambda text: None).best_dice


def models(config) -> list[str]:
    return [name for name in (config.getoption("--bench-models") or DEFAULT_MODELS).split(",") if name]


def pytest_generate_tests(metafunc):
    if "epoch_model" in metafunc.fixturenames:
        metafunc.parametrize("epoch_model", models(metafunc.config))


def test_whole_epoch_segkit_vs_plain(benchmark, bench_settings, epoch_model, tmp_path, pytestconfig):
    device = bench_settings.device
    plain_seconds: list[float] = []
    plain_dice: list[float] = []

    def time_plain_first() -> None:  # A B A B: the plain epoch runs just before each segkit epoch
        started = time.perf_counter()
        plain_dice.append(plain_epoch(epoch_model, device))
        plain_seconds.append(time.perf_counter() - started)

    rounds = pytestconfig.getoption("--bench-epoch-rounds")
    if rounds < 1:
        raise pytest.UsageError(f"--bench-epoch-rounds must be a positive integer, got {rounds}")
    dice = benchmark.pedantic(
        lambda: segkit_epoch(epoch_model, device, tmp_path), setup=time_plain_first, rounds=rounds
    )
    segkit_seconds = benchmark.stats.stats.median
    plain = sorted(plain_seconds)[len(plain_seconds) // 2]
    benchmark.extra_info.update(
        model=epoch_model,
        image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
        train_images=270,
        valid_images=30,
        segkit_epoch_s=round(segkit_seconds, 2),
        plain_epoch_s=round(plain, 2),
        speedup=round(plain / segkit_seconds, 3),
        segkit_valid_dice=round(dice, 4),
        plain_valid_dice=round(plain_dice[-1], 4),
        torch_threads=torch.get_num_threads(),
    )
    pytestconfig.segkit_bench_lines.append(
        f"whole epoch {epoch_model} {IMAGE_SIZE}x{IMAGE_SIZE} batch {BATCH_SIZE} (270 train + 30 valid, "
        f"start-up included, median of {rounds}): plain {plain:.1f} s, segkit {segkit_seconds:.1f} s, "
        f"x{plain / segkit_seconds:.2f}"
    )
