"""``--recipe auto``: segkit's planner. Each choice is one small function below, in the order they are
made, reading the dataset fingerprint, the measured machine and the budget, and stating its reason.
The numbers the rules use are in ``RULES``, with what each one means (how each was measured:
benchmarks/README.md, "How --recipe auto's rules were measured"); to change how auto plans, change a
number there or a function here.

What it decides, in order:

1. the task's loss;
2. resize whole photos, or train on crops at native resolution and infer by tiles: crops when the
   thinnest structure that matters would be narrower than ``thin_px`` pixels at the network's input
   size, or when photos are more than ``large_photo_factor`` times that size;
3. the model: ``resnet34_unet`` with ImageNet weights when they are already on disk, else the lighter
   ``resnet18_unet`` from scratch; and the memory layout (channels_last where a timed step says it
   is faster on this CPU);
4. the input (or crop) size and batch: the largest size whose expected number of optimizer steps in
   the budget, from timed training steps on this device, is at least ``min_steps``; progressive
   sizes (resize path only), tile size and overlap;
5. the optimizer and schedule, EMA, augmentation;
6. inference: threshold calibration, flip TTA, and hole filling / keeping the largest component
   only for one compact object per image.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from segkit.config.settings import parse_duration
from segkit.planning import Plan, PlanRequest
from segkit.planning.fingerprint import Fingerprint
from segkit.planning.machine import Candidate

# How each number was measured: benchmarks/README.md, "How --recipe auto's rules were measured".
RULES: dict[str, Any] = {
    # Structures narrower than this many pixels at the network's input size vanish when photos are
    # resized.
    "thin_px": 2.5,
    # Photos whose short side exceeds this many input sides lose too much to resizing: crop.
    "large_photo_factor": 4.0,
    # Input sides tried on the resize path, and crop sides on the crop path, smallest first.
    "resize_sizes": (128, 160, 192, 224, 256, 320, 384, 448, 512),
    "crop_sizes": (128, 192, 256, 320, 384, 512),
    # The size every timing is scaled from (one timed candidate; others scale with their pixels,
    # and the chosen one is timed too).
    "reference_size": 128,
    # Optimizer steps a from-scratch run needs within its budget: more steps at a smaller input beat
    # fewer at a larger one.
    "min_steps": 1000,
    # A training loop's step takes this many times a timed step on random data, beyond the measured
    # time to make its items (``_data_seconds_per_step``): loss, metrics, the batch's collation; crops
    # come from decoded photos kept in memory.
    "loop_factor": {"resize": 1.1, "crops": 1.0},
    # Batch size by device type.
    "batch_size": {"cpu": 16, "cuda": 32, "mps": 16},
    # Share of a budget left for validation, checkpoints and the last epoch's end.
    "overhead": 0.12,
    # Crops centred on foreground when the median image's foreground is below this fraction.
    "sparse_foreground": 0.01,
    # More expected passes over the training photos than this: the "strong" augmentation pipeline.
    "strong_augment_epochs": 150,
    # At most this many objects per image (median) for keep-largest and hole filling to help.
    "single_object": 1.5,
    # channels_last is chosen when a timed training step in it is at least this much faster (it pays
    # on some CPUs and not on others, so it is measured, not assumed).
    "channels_last_gain": 0.10,
    "default_budget": "15m",
    # From scratch, the model that trains the most images a second for its quality on a CPU; with
    # ImageNet weights on disk, the pretrained one (they are worth more than speed).
    "model": "resnet18_unet",
    "pretrained_model": "resnet34_unet",
}

#: torchvision's ImageNet weights of the built-in models' encoders, as torch hub's cache names them.
WEIGHTS_FILES = {"resnet34_unet": "resnet34-b627a593.pth", "resnet18_unet": "resnet18-f37072fd.pth"}


def plan_auto(request: PlanRequest) -> Plan:
    plan = Plan("auto")
    values = request.values
    if values.get("time_budget") is None:
        plan.choose(
            "time_budget", RULES["default_budget"], "no --time-budget given: auto plans for 15 minutes"
        )
        values["time_budget"] = parse_duration(RULES["default_budget"])
    plan.choose("epochs", 1000, "the time budget, not an epoch count, ends the run")
    fingerprint = request.fingerprint()
    plan.facts["fingerprint"] = fingerprint.to_dict()
    plan.facts["fingerprint_summary"] = fingerprint.summary()
    _loss(plan, request, fingerprint)
    crops = _crops_or_resize(plan, request, fingerprint)
    _model(plan, request)
    _batch(plan, request)
    _memory_layout(plan, request, fingerprint)
    _image_sizes_and_tiles(plan, request, fingerprint, crops)
    _optimisation(plan, request)
    _augmentation(plan, request, fingerprint, crops)
    _inference(plan, request, fingerprint, crops)
    return plan


def _loss(plan: Plan, request: PlanRequest, fingerprint: Fingerprint) -> None:
    if "loss" in request.chosen:
        return
    if fingerprint.task == "multiclass":
        plan.choose(
            "loss",
            "ce_dice",
            "multi-class: cross-entropy for every pixel plus soft Dice, which weighs "
            "small classes as much as large ones",
        )
    else:
        plan.choose(
            "loss",
            "bce_dice",
            f"{fingerprint.task}: BCE plus soft Dice, robust to a small foreground "
            f"({fingerprint.foreground_fraction[1]:.1%} of a median image)",
        )


def _crops_or_resize(plan: Plan, request: PlanRequest, fingerprint: Fingerprint) -> bool:
    values = request.values
    if "crop_size" in request.chosen:
        given = values.get("crop_size") is not None
        plan.reasons["_sampling"] = "crops at native resolution: --crop-size given" if given else "resize"
        return given
    size = values["image_size"] if "image_size" in request.chosen else RULES["reference_size"]
    factor = size / max(1.0, fingerprint.short_side)
    thinnest = fingerprint.thinnest_width_px()
    at_input = thinnest * min(1.0, factor)
    large = fingerprint.short_side > RULES["large_photo_factor"] * size
    plan.facts["thinnest_px_at_input"] = round(at_input, 2) if math.isfinite(at_input) else None
    if at_input < RULES["thin_px"] or large:
        why = (
            f"the thinnest structures (~{thinnest:.1f} px) would be {at_input:.1f} px wide "
            f"resized to {size}px"
            if at_input < RULES["thin_px"]
            else f"photos ({fingerprint.short_side:.0f} px short side) are over "
            f"{RULES['large_photo_factor']:g}x the {size}px input"
        )
        plan.reasons["_sampling"] = f"crops at native resolution, tiles to predict: {why}"
        return True
    plan.reasons["_sampling"] = (
        f"whole photos resized: structures stay ~{at_input:.1f} px wide at {size}px and photos are "
        f"{fingerprint.short_side:.0f} px on the short side"
    )
    return False


def _image_sizes_and_tiles(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    """The final image (or crop) size: the largest candidate, up to the median photo's short side, at
    which ``min_steps`` timed steps fit the budget (else the smallest); then, for crops, the tile and
    crop settings (``_crop_settings``), or, for resized photos, the progressive sizes before it."""
    values = request.values
    batch = values["batch_size"] if "batch_size" in request.chosen else plan.settings["batch_size"]
    key = "crop_size" if crops else "image_size"
    # Never beyond the median photo's short side (photos smaller than every candidate: their own
    # side, in multiples of 32).
    sizes = [s for s in RULES["crop_sizes" if crops else "resize_sizes"] if s <= fingerprint.short_side]
    sizes = sizes or [max(32, int(fingerprint.short_side) // 32 * 32)]
    budget = float(values["time_budget"]) * (1 - RULES["overhead"])

    def candidate(size: int) -> Candidate:
        return _candidate(plan, request, fingerprint, size)

    reference = request.time(candidate(RULES["reference_size"]))
    timings = plan.facts.setdefault("timings", {})
    timings[reference.candidate.describe()] = round(reference.step_s, 3)

    data_s = _data_seconds_per_step(plan, request, batch, crops)

    def steps(size: int, step_s: float) -> float:
        """Optimizer steps expected in the budget at ``size``, from a step's measured seconds."""
        stage_cost = 1.0 if crops else sum((s / size) ** 2 for s in _stages(size)) / len(_stages(size))
        loop = RULES["loop_factor"]["crops" if crops else "resize"]
        return budget / ((step_s * stage_cost * loop + data_s) * _validation_factor(crops))

    if key in request.chosen:
        chosen = values[key]
    else:
        chosen = sizes[0]
        for size in sizes:
            if steps(size, reference.step_s * (size / RULES["reference_size"]) ** 2) >= RULES["min_steps"]:
                chosen = size
        if chosen != RULES["reference_size"]:
            timed = request.time(candidate(chosen))
            timings[timed.candidate.describe()] = round(timed.step_s, 3)
            while chosen != sizes[0] and steps(chosen, timed.step_s) < RULES["min_steps"]:
                chosen = sizes[sizes.index(chosen) - 1]
                timed = request.time(candidate(chosen))
                timings[timed.candidate.describe()] = round(timed.step_s, 3)
        step_s = request.time(candidate(chosen)).step_s
        expected = steps(chosen, step_s)
        plan.facts["expected_steps"] = round(expected)
        reason = (
            f"{step_s:.2f} s a step of {batch} measured here: ~{expected:.0f} steps fit the budget "
            f"(the largest size leaving >= {RULES['min_steps']})"
        )
        plan.choose(key, chosen, f"{plan.reasons['_sampling']}; {reason}" if crops else reason)
    if crops:
        _crop_settings(plan, request, fingerprint, chosen)
    else:
        stages = _stages(chosen)
        if "progressive_sizes" not in request.chosen:
            plan.choose(
                "progressive_sizes",
                stages,
                "progressive resizing: early epochs at smaller sizes, more of them in the budget",
            )
        if "image_size" not in request.chosen:
            plan.settings["image_size"] = chosen


def _data_seconds_per_step(plan: Plan, request: PlanRequest, batch: int, crops: bool) -> float:
    """Seconds a training step waits for its batch: on the resize path, when the run loads its data
    in its own process (no loader workers), the measured time to make each item (augmenting and
    resizing a whole photo) times the batch; loader workers make items beside training, and crops
    cost little (they are in ``loop_factor``)."""
    if crops or request.loader_workers() > 0:
        return 0.0
    item_s = request.item_seconds()
    plan.facts["item_ms"] = round(1000 * item_s, 2)
    return batch * item_s


def _crop_settings(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crop: int) -> None:
    chosen = request.chosen
    if "image_size" not in chosen:
        plan.choose("image_size", crop, "the crop size (the network input)")
    if "tile" not in chosen:
        tile = min(2 * crop, int(max(crop, fingerprint.short_side)))
        plan.choose(
            "tile", tile, "validation and prediction by tiles of twice the crop, at native resolution"
        )
    if "progressive_sizes" not in chosen:
        plan.choose("progressive_sizes", [], "no progressive crop sizes: smaller crops validated poorly")
    if "foreground_fraction" not in chosen:
        sparse = fingerprint.foreground_fraction[1] < RULES["sparse_foreground"]
        plan.choose(
            "foreground_fraction",
            0.5 if sparse else 0.33,
            "half the crops centred on foreground: it is sparse"
            if sparse
            else "a third of the crops centred on foreground (nnU-Net's share)",
        )


def _model(plan: Plan, request: PlanRequest) -> None:
    if "model" in request.chosen:
        return
    pretrained = _weights_on_disk(RULES["pretrained_model"])
    if pretrained is not None and "model_options" not in request.chosen:
        plan.choose(
            "model",
            RULES["pretrained_model"],
            f"UNet over a ResNet34 encoder with ImageNet weights, found on disk ({pretrained})",
        )
        plan.choose("model_options", {"pretrained": True}, "start from the ImageNet weights on disk")
        return
    plan.choose(
        "model",
        RULES["model"],
        "UNet over a ResNet18 encoder, light decoder: from scratch on a budget, images a second "
        "count most (about 1.7x resnet34_unet's on a CPU)",
    )
    if "model_options" in request.chosen:
        return
    weights = _weights_on_disk(RULES["model"])
    if weights is not None:
        plan.choose("model_options", {"pretrained": True}, f"ImageNet weights found on disk ({weights})")
    else:
        plan.facts["pretrained"] = "no ImageNet weights on disk: training from scratch (auto never downloads)"


def _weights_on_disk(model: str) -> Path | None:
    try:
        import torch.hub

        path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILES[model]
    except Exception:  # noqa: BLE001 - no hub directory means no weights
        return None
    return path if path.is_file() else None


def _candidate(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, size: int) -> Candidate:
    """The run's model, batch and layout as planned so far (or as the user fixed them), at ``size``."""
    values = request.values

    def setting(key: str) -> Any:
        return values[key] if key in request.chosen else plan.settings.get(key, values[key])

    out = 1 if fingerprint.task == "binary" else len(fingerprint.class_names)
    # Weights do not change a step's time: the candidate is built without loading any.
    options = tuple(sorted((k, v) for k, v in (setting("model_options") or {}).items() if k != "pretrained"))
    return Candidate(
        setting("model"),
        size,
        setting("batch_size"),
        options,
        fingerprint.channels,
        out,
        setting("channels_last"),
    )


def _batch(plan: Plan, request: PlanRequest) -> None:
    if "batch_size" not in request.chosen:
        device = request.device.type
        batch = RULES["batch_size"].get(device, 16)
        plan.choose("batch_size", batch, f"on {device}: small batches, many steps")


def _memory_layout(plan: Plan, request: PlanRequest, fingerprint: Fingerprint) -> None:
    """channels_last or NCHW for training on a CPU, whichever a timed step says is faster here (on
    CUDA the run's own default, channels_last, stands)."""
    if "channels_last" in request.chosen or request.device.type != "cpu":
        return
    reference = _candidate(plan, request, fingerprint, RULES["reference_size"])
    nchw, nhwc = request.time_side_by_side(
        [replace(reference, channels_last=False), replace(reference, channels_last=True)]
    )
    faster = nhwc.step_s < (1 - RULES["channels_last_gain"]) * nchw.step_s
    plan.facts.setdefault("timings", {}).update(
        {timing.candidate.describe(): round(timing.step_s, 3) for timing in (nchw, nhwc)}
    )
    plan.choose(
        "channels_last",
        faster,
        f"a training step at {RULES['reference_size']}px took {nhwc.step_s:.2f} s in channels_last and "
        f"{nchw.step_s:.2f} s in NCHW here",
    )


def _optimisation(plan: Plan, request: PlanRequest) -> None:
    fixed = {
        "optimizer": ("adamw", "AdamW with decoupled weight decay"),
        "learning_rate": (2e-3, "peak rate measured best for 15-minute runs"),
        "weight_decay": (1e-4, "light regularisation"),
        "scheduler": ("cosine", "annealed on a cosine over the budget"),
        "warmup_fraction": (0.05, "warm-up over the first 5% of the budget"),
        "ema_decay": (0.0, "no weight average: no gain measured within short budgets"),
    }
    for key, (value, reason) in fixed.items():
        if key not in request.chosen:
            plan.choose(key, value, reason)


def _augmentation(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    """Stronger augmentation when the budget shows each photo many times (and the task is not a
    street-like multi-class one, where vertical flips and shears make unnatural scenes)."""
    if "augment" in request.chosen:
        return
    batch = plan.settings.get("batch_size", request.values["batch_size"])
    size = plan.settings.get("crop_size" if crops else "image_size", RULES["reference_size"])
    per_photo = max(1.0, fingerprint.height[1] * fingerprint.width[1] / size**2) if crops else 1.0
    epochs = plan.facts.get("expected_steps", 0) * batch / max(1.0, fingerprint.images * per_photo)
    plan.facts["expected_epochs"] = round(epochs, 1)
    if epochs > RULES["strong_augment_epochs"] and fingerprint.task != "multiclass":
        plan.choose(
            "augment",
            "strong",
            f"~{epochs:.0f} passes over the photos: stronger augmentation against overfitting",
        )
    else:
        plan.choose(
            "augment",
            "default",
            f"~{epochs:.0f} passes over the photos: flips, small rotations and colour jitter",
        )


def _inference(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    chosen = request.chosen
    thresholded = fingerprint.task != "multiclass"
    if "calibrate_threshold" not in chosen:
        plan.choose(
            "calibrate_threshold",
            thresholded,
            "threshold picked on the validation split"
            if thresholded
            else "multi-class: argmax, no threshold",
        )
    if "tta" not in chosen:
        plan.choose("tta", True, "flip test-time augmentation")
    single = (
        fingerprint.task == "binary"
        and not crops
        and fingerprint.objects_per_image <= RULES["single_object"]
        and fingerprint.empty_share < 0.5
    )
    reason = (
        f"one compact object per image (median {fingerprint.objects_per_image:g})"
        if single
        else "several objects, thin structures or classes per image: clean-up would delete true parts"
    )
    for key in ("fill_holes", "keep_largest"):
        if key not in chosen:
            plan.choose(key, single, reason)


def _stages(size: int) -> list[int]:
    """Progressive sizes ending at ``size``: half, three quarters, full (multiples of 32)."""
    stages = sorted({max(32, round(size * part / 32) * 32) for part in (0.5, 0.75)} | {size})
    return [stage for stage in stages if stage <= size]


def _validation_factor(crops: bool) -> float:
    """How much longer than its training steps an epoch takes, validation included (estimates):
    validation runs the valid photos (about a ninth of the train ones) forward only (about a third of
    a step's cost per pixel); by tiles, overlapping, it covers about three times their pixels."""
    return 1.0 + (3.0 if crops else 1.0) / 9.0 / 3.0 * 3.0
