"""Loading a trained model from a checkpoint and predicting masks for images of any size.

Prediction follows training: the photo is resized to the network's square input size, normalised
as in training, and the logits are resized back (bilinear) to the photo's own size before the
sigmoid and the threshold, so a 500x375 photo gets a 500x375 mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

import segkit
from segkit.checkpoint import load_checkpoint
from segkit.errors import CheckpointError, UnknownComponentError
from segkit.transforms import IMAGENET_MEAN, IMAGENET_STD

IMAGENET_NORMALIZATION = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


@dataclass
class TrainedModel:
    """A model ready for inference, with what it needs to know about its training."""

    model: torch.nn.Module
    model_name: str
    image_size: int
    normalization: dict[str, list[float]]
    threshold: float
    checkpoint: dict[str, Any]
    path: Path
    device: torch.device

    @property
    def in_channels(self) -> int:
        return int(self.checkpoint["in_channels"])


def load_trained_model(path: Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Load a run folder (its best.pt) or a checkpoint file; mismatches are clear ``CheckpointError``s."""
    path = Path(path)
    payload = load_checkpoint(path)
    if path.is_dir():
        path = path / "best.pt" if (path / "best.pt").is_file() else path / "last.pt"
    name = payload.get("model_name")
    try:
        model = segkit.create_model(
            name, in_channels=int(payload["in_channels"]), out_channels=int(payload["out_channels"]),
            **dict(payload.get("model_options") or {}),
        )
    except UnknownComponentError as error:
        raise CheckpointError(f"{path} was trained with model {name!r}, which is not installed here: {error}") from None
    except KeyError as error:
        raise CheckpointError(f"{path} lacks the field {error} that segkit checkpoints carry") from None
    load_state(model, payload["model_state"], path, name)
    device = torch.device(device)
    model.to(device).eval()
    return TrainedModel(
        model=model,
        model_name=name,
        image_size=int(payload["image_size"]),
        normalization=payload.get("normalization") or IMAGENET_NORMALIZATION,
        threshold=float(payload.get("threshold", 0.5)),
        checkpoint=payload,
        path=path,
        device=device,
    )


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """``load_state_dict`` with a one-line explanation instead of a wall of keys."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if missing or unexpected or wrong_shape:
        parts = []
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} tensors of another shape (first: {wrong_shape[0]}; "
                         "another number of channels or another width?)")
        if missing:
            parts.append(f"{len(missing)} weights missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (first: {unexpected[0]})")
        raise CheckpointError(f"{path} does not fit model {name!r}: " + "; ".join(parts))
    model.load_state_dict(state)


def image_to_tensor(image: Image.Image, image_size: int, normalization: dict[str, list[float]]) -> torch.Tensor:
    """An RGB PIL image -> normalised float tensor (3, image_size, image_size), resized exactly as the
    datasets' evaluation pipeline resizes (so predict and evaluate see the same pixels)."""
    pixels = v2.functional.pil_to_tensor(image)
    resized = v2.functional.resize(pixels, [image_size, image_size], antialias=True)
    scaled = resized.float() / 255.0
    return v2.functional.normalize(scaled, mean=list(normalization["mean"]), std=list(normalization["std"]))


@torch.inference_mode()
def predict_logits(trained: TrainedModel, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Logits for a batch at network resolution; ``tta`` averages with the horizontally flipped pass."""
    images = images.to(trained.device)
    logits = trained.model(images).float()
    if tta:
        logits = (logits + trained.model(images.flip(-1)).float().flip(-1)) / 2
    return logits


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, 1, h, w)`` logits to ``size`` (H, W) bilinearly; a no-op when sizes agree."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def predict_probability(trained: TrainedModel, image: Image.Image, tta: bool = False) -> np.ndarray:
    """Foreground probability (H, W) float32 at the image's own size."""
    batch = image_to_tensor(image, trained.image_size, trained.normalization).unsqueeze(0)
    logits = resize_logits(predict_logits(trained, batch, tta=tta), (image.height, image.width))
    return torch.sigmoid(logits)[0, 0].cpu().numpy()
