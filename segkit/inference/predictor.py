"""Loading a trained model from a checkpoint and predicting masks for images of any size.

Prediction follows training: the photo is resized to the network's square input size, normalised
as in training, and the logits are resized back (bilinear) to the photo's own size before the
sigmoid and the threshold, so a 500x375 photo gets a 500x375 mask.

Photos of other bands than 8-bit RGB (``segkit.data.geotiff.Raster``: near infrared, 16-bit bands) are
normalised with the per-band statistics the checkpoint stores (``normalization``, one mean and standard
deviation per band); a photo whose bands are not the model's input channels is a one-line ``DataError``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from segkit.checkpoint_files import load_checkpoint
from segkit.components import create_model
from segkit.config.run_folder import is_fold_parent
from segkit.data.geotiff import Raster
from segkit.data.imageio import MAX_IMAGE_PIXELS
from segkit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from segkit.errors import CheckpointError, DataError, UnknownComponentError, UsageError
from segkit.execution.fast_path import prepare_for_inference
from segkit.inference.forward import input_logits
from segkit.inference.inputs import as_rgb_image, collect_inputs, is_path
from segkit.inference.postprocess import postprocess_classes, postprocess_mask
from segkit.inference.tiling import predict_tiled
from segkit.task import BinaryTask, Task, task_from_checkpoint

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
    #: Inference defaults the training recipe chose (``predict``/``evaluate`` flags override them).
    tta: bool = False
    postprocess: dict[str, bool] = field(default_factory=dict)
    #: What the model's outputs mean (see ``segkit.task``), at the checkpoint's threshold.
    task: Task = field(default_factory=BinaryTask)
    #: Tiled inference at native resolution, for runs trained on crops: ``{"tile", "overlap",
    #: "blend", "scale"}``; None: resize photos to ``image_size`` (see ``segkit.inference.tiling``).
    tiling: dict[str, Any] | None = None
    #: Clean-up per class (multiclass) or label (multilabel) chosen on a fold run's out-of-fold
    #: predictions: ``{"fill_holes": [ids], "keep_largest": [ids]}`` (see ``postprocess_classes``).
    class_postprocess: dict[str, list[int]] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return int(self.checkpoint["in_channels"])

    @property
    def epoch(self) -> int | None:
        """The epoch whose weights these are (``best.pt``: the best one so far)."""
        return self.checkpoint.get("epoch")

    def predict(self, images: Any, tta: bool | None = None) -> Any:
        """Masks made as ``segkit predict`` makes them with the run's defaults (threshold, flip TTA,
        clean-up, tiling), each at its photo's own size: a bool ``(H, W)`` array for a binary model,
        class ids ``(H, W)`` for a multiclass one, a bool ``(K, H, W)`` array for a multilabel one.

        ``images``: one photo (an image path, a PIL image, a numpy array ``(H, W, 3)`` of uint8 0-255
        or floats 0-1) gives one mask; a list of photos gives a list of masks in the same order; a
        folder gives ``{path: mask}`` for its images, sorted by name. ``tta`` overrides the run's flip
        TTA."""
        if isinstance(images, (list, tuple)):
            return [self.predict(image, tta) for image in images]
        if is_path(images) and Path(images).is_dir():
            return {path: self.predict(path, tta) for path in collect_inputs([images])}
        image = as_rgb_image(images)
        use_tta = self.tta if tta is None else tta
        probability = predict_probability(self, image, tta=use_tta, tiling=self.tiling)
        mask = self.task.mask_from_probability(probability)
        if self.task.supports_postprocess and any(self.postprocess.values()):
            mask = postprocess_mask(mask, **self.postprocess)
        return postprocess_classes(mask, self.task.kind, self.class_postprocess)


def load_trained_model(
    path: Path, device: str | torch.device = "cpu", fold_batchnorm: bool = True
) -> TrainedModel:
    """Load a run folder (its best.pt) or a checkpoint file; mismatches are clear ``CheckpointError``s.

    The model is an eval-only copy prepared by ``segkit.execution.fast_path.prepare_for_inference``.
    The parent folder of a ``--folds`` run gives the folds' ensemble (``segkit.inference.ensemble``)."""
    path = Path(path)
    if is_fold_parent(path):
        from segkit.inference.ensemble import load_ensemble

        return load_ensemble(path, device, fold_batchnorm)
    payload = load_checkpoint(path)
    if path.is_dir():
        path = path / "best.pt" if (path / "best.pt").is_file() else path / "last.pt"
    warn_if_untrained(payload, path)
    name = payload.get("model_name")
    if not isinstance(name, str):
        raise CheckpointError(f"{path} names no model (model_name is {name!r})")
    try:
        image_size, threshold, normalization = inference_settings(payload)
        task = task_from_checkpoint(payload, path)
        model = create_model(
            name,
            in_channels=int(payload["in_channels"]),
            out_channels=task.out_channels,
            **dict(payload.get("model_options") or {}),
        )
    except UnknownComponentError as error:
        raise CheckpointError(
            f"{path} was trained with model {name!r}, which is not installed here: {error}"
        ) from None
    except KeyError as error:
        raise CheckpointError(f"{path} lacks the field {error} that segkit checkpoints carry") from None
    except UsageError as error:  # the checkpoint's model_options, refused by the installed model
        raise CheckpointError(
            f"{path} records options the installed model {name!r} refuses: {error}"
        ) from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has malformed fields ({type(error).__name__}: {error})") from None
    except (MemoryError, RuntimeError) as error:  # options asking for weights beyond any memory
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path}: model {name!r} cannot be built with its recorded options: {reason}"
        ) from None
    load_state(model, payload["model_state"], path, name)
    device = torch.device(device)
    # The fast path: BatchNorm folded into the convolutions, channels_last where it pays.
    fast_model = prepare_for_inference(model, device, fold=fold_batchnorm, threads=0)
    tta, postprocess = recipe_inference_defaults(payload, path)
    tiling = recorded_tiling(payload, path)
    return TrainedModel(
        model=fast_model,
        model_name=name,
        image_size=image_size,
        normalization=normalization,
        threshold=threshold,
        checkpoint=payload,
        path=path,
        device=device,
        tta=tta,
        postprocess=postprocess,
        task=task,
        tiling=tiling,
    )


def warn_if_untrained(payload: dict[str, Any], path: Path) -> None:
    """A checkpoint of epoch 0 that segkit trained holds the initial weights (its run trained no
    epoch): evaluate, predict and export say so. An imported model (``segkit.Run.from_model``) also
    records epoch 0, but its weights were trained elsewhere."""
    if payload.get("epoch") == 0 and not payload.get("imported"):
        warnings.warn(
            f"{path} holds epoch 0: its run trained no epoch, so these are the untrained initial weights",
            stacklevel=3,
        )


#: Post-processing steps a checkpoint may ask for by default (see ``segkit.inference.postprocess``).
POSTPROCESS_STEPS = ("fill_holes", "keep_largest")


def recipe_inference_defaults(payload: dict[str, Any], path: Path) -> tuple[bool, dict[str, bool]]:
    """The checkpoint's ``inference`` table: flip TTA and post-processing its recipe chose (all off
    when absent, as in checkpoints written before recipes could choose them)."""
    table = payload.get("inference") or {}
    if not isinstance(table, dict):
        raise CheckpointError(f"{path} has a malformed inference table ({type(table).__name__})")
    chosen = {}
    for key in ("tta", *POSTPROCESS_STEPS):
        value = table.get(key, False)
        if not isinstance(value, bool):
            raise CheckpointError(f"{path} has a malformed inference.{key} ({value!r}, not true/false)")
        chosen[key] = value
    tta = chosen.pop("tta")
    return tta, chosen


def recorded_tiling(payload: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """The checkpoint's tiled-inference defaults (runs trained on crops), checked; None without."""
    table = payload.get("inference") or {}
    if table.get("tile") is None:
        return None
    tiling = {key: table.get(key) for key in ("tile", "overlap", "blend", "scale")}
    largest_side = math.isqrt(MAX_IMAGE_PIXELS)
    tile, overlap, scale = tiling["tile"], tiling["overlap"], tiling["scale"]
    if isinstance(tile, bool) or not isinstance(tile, int) or not 8 <= tile <= largest_side:
        raise CheckpointError(f"{path} has a malformed inference.tile ({tile!r})")
    if not isinstance(overlap, (int, float)) or not 0 <= overlap < 1:
        raise CheckpointError(f"{path} has a malformed inference.overlap ({overlap!r})")
    if not isinstance(scale, (int, float)) or not 0 < scale <= 4:
        raise CheckpointError(f"{path} has a malformed inference.scale ({scale!r})")
    if tiling["blend"] not in ("gaussian", "constant"):
        raise CheckpointError(f"{path} has a malformed inference.blend ({tiling['blend']!r})")
    return tiling


def inference_settings(payload: dict[str, Any]) -> tuple[int, float, dict[str, list[float]]]:
    """The checkpoint's ``image_size``, ``threshold`` and ``normalization`` (a mean/std dict, "imagenet"
    or absent), checked: a checkpoint is a file from anywhere, and a crafted ``image_size`` of a
    million would otherwise ask for a trillion-pixel input. The mean and std hold a number per input
    channel: three for RGB, one per band for band photos."""
    image_size, threshold = payload["image_size"], float(payload.get("threshold", 0.5))
    normalization = payload.get("normalization")
    if normalization is None or normalization == "imagenet":
        normalization = IMAGENET_NORMALIZATION
    if not isinstance(normalization, dict):
        raise TypeError(f"normalization is {normalization!r}")
    mean, std = [float(v) for v in normalization["mean"]], [float(v) for v in normalization["std"]]
    largest_side = math.isqrt(MAX_IMAGE_PIXELS)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not 1 <= image_size <= largest_side:
        raise ValueError(f"image_size {image_size!r} is not a side length from 1 to {largest_side}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold {threshold!r} is not strictly between 0 and 1")
    if not mean or len(mean) != len(std) or not all(map(math.isfinite, mean + std)) or 0 in std:
        raise ValueError(
            f"normalization mean {mean} / std {std} is not as many finite numbers each (one per input "
            "channel), std nonzero"
        )
    return image_size, threshold, {"mean": mean, "std": std}


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    """``load_state_dict`` with a one-line explanation instead of a wall of keys."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} has a malformed model_state ({type(state).__name__}, not a dict)")
    not_tensors = [key for key, value in state.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path} has a malformed model_state: {not_tensors[0]!r} is not a tensor")
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
            parts.append(
                f"{len(wrong_shape)} tensors of another shape (first: {wrong_shape[0]}; "
                "another number of channels or another width?)"
            )
        if missing:
            parts.append(f"{len(missing)} weights missing (first: {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected weights (first: {unexpected[0]})")
        raise CheckpointError(f"{path} does not fit model {name!r}: " + "; ".join(parts))
    model.load_state_dict(state)


def image_to_tensor(
    image: Image.Image | Raster, image_size: int, normalization: dict[str, list[float]]
) -> torch.Tensor:
    """An RGB PIL image -> normalised float tensor (3, image_size, image_size), resized exactly as the
    datasets' evaluation pipeline resizes (so predict and evaluate see the same pixels). A band photo
    (``Raster``) gives (C, image_size, image_size), normalised with the per-band statistics and resized
    as its dataset resizes it (floats, normalised first: both are linear, so the order only rounds)."""
    from torchvision.transforms import v2  # here: tiled prediction never needs it, and it costs ~170 MB

    mean, std = list(normalization["mean"]), list(normalization["std"])
    if isinstance(image, Raster) and image.bands:
        normalised = v2.functional.normalize(image.pixels(), mean=mean, std=std)
        return v2.functional.resize(normalised, [image_size, image_size], antialias=True)
    pixels = image.pixels() if isinstance(image, Raster) else v2.functional.pil_to_tensor(image)
    resized = v2.functional.resize(pixels, [image_size, image_size], antialias=True)
    scaled = resized.float() / 255.0
    return v2.functional.normalize(scaled, mean=mean, std=std)


def check_photo_bands(trained: TrainedModel, image: Any, name: Any = None) -> None:
    """A one-line ``DataError`` when the photo's bands are not the model's input channels (an 8-bit RGB
    photo given to a model trained on 4-band photos, say). ``name``: how to name the photo."""
    if len(trained.normalization["mean"]) != trained.in_channels:
        raise CheckpointError(
            f"{trained.path} normalises {len(trained.normalization['mean'])} channels for a model of "
            f"{trained.in_channels} input channels"
        )
    channels = image.channels if isinstance(image, Raster) else 3
    if channels == trained.in_channels:
        return
    kind = image.describe() if isinstance(image, Raster) else "8-bit RGB"
    named = name or getattr(image, "path", None) or "the photo"
    trained_on = "8-bit RGB photos" if trained.in_channels == 3 else f"photos of {trained.in_channels} bands"
    raise DataError(
        f"{named} is a {kind} photo ({channels} bands), but {trained.path} was trained on {trained_on}"
    )


@torch.inference_mode()
def predict_logits(trained: TrainedModel, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Logits for a batch at network resolution; ``tta`` averages with the horizontally flipped pass."""
    return input_logits(trained.model, trained.device, images, tta)


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``(N, 1, h, w)`` logits to ``size`` (H, W) bilinearly; a no-op when sizes agree."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def predict_probability(
    trained: TrainedModel,
    image: Image.Image | Raster,
    tta: bool = False,
    tiling: dict[str, Any] | None = None,
) -> np.ndarray:
    """Probabilities at the image's own size, float32: the foreground's (H, W) for a binary model,
    one map per class (K, H, W) for a multiclass (softmax) or multilabel (sigmoids) one. With
    ``tiling`` (``{"tile", "overlap", "blend", "scale"}``) the photo is seen through tiles at native
    resolution (rescaled by ``scale`` first, and the probabilities back to the photo's size)."""
    check_photo_bands(trained, image)
    if tiling is not None:
        return _tiled_probability(trained, image, tta, tiling)
    batch = image_to_tensor(image, trained.image_size, trained.normalization).unsqueeze(0)
    logits = resize_logits(predict_logits(trained, batch, tta=tta), (image.height, image.width))
    probabilities = trained.task.probabilities(logits)[0].cpu().numpy()
    return probabilities[0] if trained.task.kind == "binary" else probabilities


def _tiled_probability(
    trained: TrainedModel, image: Image.Image | Raster, tta: bool, tiling: dict[str, Any]
) -> np.ndarray:

    scale = float(tiling.get("scale", 1.0))
    seen: Any = image
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        if isinstance(image, Raster) and image.bands:  # float rows, as tiling reads them, resized alike
            rows = torch.from_numpy(image.read_rows(0, image.height)).permute(2, 0, 1)[None]
            resized = F.interpolate(rows, size=(size[1], size[0]), mode="bilinear", align_corners=False)
            seen = resized[0].permute(1, 2, 0).numpy()
        else:
            photo = Image.fromarray(image.read_rows(0, image.height)) if isinstance(image, Raster) else image
            seen = photo.resize(size, Image.Resampling.BILINEAR)
    probability = predict_tiled(trained, seen, tiling["tile"], tiling["overlap"], tiling["blend"], tta=tta)
    if scale != 1.0:
        maps = torch.from_numpy(np.ascontiguousarray(probability, dtype=np.float32))
        maps = maps[None, None] if maps.dim() == 2 else maps[None]
        resized = F.interpolate(maps, size=(image.height, image.width), mode="bilinear", align_corners=False)
        probability = resized[0, 0].numpy() if probability.ndim == 2 else resized[0].numpy()
    return probability
