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
   the budget, from timed training steps on this device, is at least ``min_steps`` (and one epoch);
   progressive sizes (resize path only), tile size and overlap; a budget too short for one epoch of
   the plan is refused (``UsageError``, before any run folder exists) with the shortest that would do;
5. the optimizer and schedule, EMA, augmentation;
6. inference: threshold calibration, flip TTA, and hole filling / keeping the largest component
   only for one compact object per image.

Each reason states what was measured and why the choice followed from it. Timing is time-boxed
(``segkit.planning.PlanRequest``): a timing the planning allowance has no room for is left out and the
plan scales what it has, saying so. Given the same fingerprint and timings the plan is the same.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from segkit.config.settings import parse_duration
from segkit.errors import UsageError
from segkit.planning import Plan, PlanRequest, format_seconds, planning_allowance
from segkit.planning.fingerprint import CONTEXT_THICKNESS, MIN_CLASS_SHARE, RARE_SHARE, Fingerprint
from segkit.planning.machine import Candidate, Timing

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
    # and the chosen one is timed too); photos smaller than it are timed at their own size.
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
    # Share of a budget (after planning) left for validation, checkpoints and the last epoch's end.
    "overhead": 0.12,
    # A foreground under this share of a median image is small: BCE alone would let the background win.
    "small_foreground": 0.1,
    # Crops centred on foreground when the median image's foreground is below this fraction.
    "sparse_foreground": 0.01,
    # More expected passes over the training photos than this: the "strong" augmentation pipeline.
    "strong_augment_epochs": 150,
    # At most this many objects per image (median) for keep-largest and hole filling to help.
    "single_object": 1.5,
    # channels_last is chosen when a timed training step in it is at least this much faster (it pays
    # on some CPUs and not on others, so it is measured, not assumed). The margin keeps the noise of a
    # busy machine (steps timed apart vary by 10% and more under load) from flipping the choice between
    # `segkit plan` and the run.
    "channels_last_gain": 0.15,
    "default_budget": "15m",
    # From scratch, the model that trains the most images a second for its quality on a CPU; with
    # ImageNet weights on disk, the pretrained one (they are worth more than speed).
    "model": "resnet18_unet",
    "pretrained_model": "resnet34_unet",
    # The race (``segkit.racing``): when the data leaves more than one plan reasonable, each candidate
    # trains for a slice of this share of the training budget, by successive halving, and the best
    # continues with its weights; at most ``race_candidates`` of them, each given at least
    # ``race_min_steps`` optimizer steps in its first slice (fewer rank by noise: no race).
    "race_share": 0.25,
    "race_candidates": 3,
    "race_min_steps": 60,
    # Class weights for rare classes (a race candidate): (median class share / class share) ** power,
    # within these bounds; rare classes gain up to 10x, the largest lose weight.
    "class_weight_power": 0.5,
    "class_weight_bounds": (0.1, 10.0),
    # Folds (``--folds``): this many when the budget leaves each fold at least ``fold_min_steps``
    # optimizer steps, else one run. Pets on a 2-core CPU (benchmarks/README.md): one run scored test
    # Dice 0.773 at ~140 steps, 0.835 at ~1,100 and 0.860 at ~1,500, still gaining; five folds of
    # ~30 and ~180 steps each lost to one run of the same total time by 0.05 at both budgets.
    "folds": 5,
    "fold_min_steps": 2000,
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
    crops = _choose(plan, request, fingerprint)
    _folds(plan, request)
    _race(plan, request, _race_candidates(plan, request, fingerprint, crops))
    if request.skipped:
        plan.facts["not_timed"] = list(request.skipped)
    return plan


def _choose(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool | None = None) -> bool:
    """Every choice after the budget, in order; ``crops`` True or False imposes the sampling (a race
    candidate) instead of the rules'. Returns whether the plan trains on crops."""
    _loss(plan, request, fingerprint)
    crops = _crops_or_resize(plan, request, fingerprint, crops)
    _model(plan, request)
    _batch(plan, request)
    _memory_layout(plan, request, fingerprint, crops)
    _image_sizes_and_tiles(plan, request, fingerprint, crops)
    _optimisation(plan, request)
    _augmentation(plan, request, fingerprint, crops)
    _inference(plan, request, fingerprint, crops)
    return crops


def _loss(plan: Plan, request: PlanRequest, fingerprint: Fingerprint) -> None:
    if "loss" in request.chosen:
        return
    if fingerprint.task == "multiclass":
        plan.choose(
            "loss",
            "ce_dice",
            f"multi-class ({len(fingerprint.class_names)} classes): cross-entropy for every pixel plus soft "
            "Dice, which weighs small classes as much as large ones",
        )
        return
    foreground = fingerprint.foreground_fraction[1]
    why = (
        "soft Dice keeps so small a foreground from being outweighed by the background"
        if foreground < RULES["small_foreground"]
        else "soft Dice optimises the overlap the score measures"
    )
    plan.choose(
        "loss",
        "bce_dice",
        f"{fingerprint.task}, foreground {foreground:.1%} of a median image: BCE for every pixel; {why}",
    )


def _record(plan: Plan, timing: Timing) -> None:
    """A timing in the plan's facts (``timings``: seconds a step; ``first_step_only``: those the planning
    allowance left with one untimed step, an overestimate)."""
    described = timing.candidate.describe()
    plan.facts.setdefault("timings", {})[described] = round(timing.step_s, 3)
    if timing.steps == 0 and described not in plan.facts.setdefault("first_step_only", []):
        plan.facts["first_step_only"].append(described)


def _sizes(fingerprint: Fingerprint, crops: bool) -> list[int]:
    """The input (or crop) sides auto may choose, smallest first: never beyond the median photo's short
    side (photos smaller than every candidate: their own side, in multiples of 32)."""
    sizes = [s for s in RULES["crop_sizes" if crops else "resize_sizes"] if s <= fingerprint.short_side]
    return sizes or [max(32, int(fingerprint.short_side) // 32 * 32)]


def _reference_size(fingerprint: Fingerprint, crops: bool) -> int:
    """The size timed first, which the others are scaled from: ``reference_size``, or the only size
    auto may choose for photos smaller than it (a larger one would be timed for nothing)."""
    return min(RULES["reference_size"], _sizes(fingerprint, crops)[0])


def _crops_or_resize(
    plan: Plan, request: PlanRequest, fingerprint: Fingerprint, imposed: bool | None = None
) -> bool:
    """Crops when the thinnest structure would be under ``thin_px`` wide resized to the smallest input
    the resize path may choose (or the user's ``image_size``): what holds there holds at any larger
    size; or when photos are over ``large_photo_factor`` times that input. Thinness gives way to
    context: when the classes a crop would see only the inside of (``Fingerprint.context_classes``)
    hold more of the pixels than the thin ones, whole photos are resized (the race, when it runs,
    tries crops too). ``imposed``: a race candidate's sampling, the reasons kept."""
    values = request.values
    if "crop_size" in request.chosen:
        given = values.get("crop_size") is not None
        plan.reasons["_sampling"] = (
            "crops at native resolution: --crop-size given"
            if given
            else "whole photos resized: crop_size set to none by you"
        )
        return given
    size = values["image_size"] if "image_size" in request.chosen else _sizes(fingerprint, False)[0]
    factor = size / max(1.0, fingerprint.short_side)
    thinnest = fingerprint.thinnest_width_px()
    at_input = thinnest * min(1.0, factor)
    thin = at_input < RULES["thin_px"]
    large = fingerprint.short_side > RULES["large_photo_factor"] * size
    plan.facts["thinnest_px_at_input"] = round(at_input, 2) if math.isfinite(at_input) else None
    smallest = "your" if "image_size" in request.chosen else "the smallest"
    width = (
        f"the thinnest structures (~{thinnest:.1f} px) {'would be' if thin else 'stay'} {at_input:.1f} px "
        f"wide resized to {smallest} {size} px input (crops below {RULES['thin_px']:g} px)"
        if math.isfinite(at_input)
        else "no foreground structure to keep thin"
    )
    side = (
        f"photos ({fingerprint.short_side:.0f} px short side) are "
        f"{'over' if large else 'under'} {RULES['large_photo_factor']:g}x {smallest} {size} px input"
    )
    window = _sizes(fingerprint, True)[0]
    context = fingerprint.context_classes(window)
    thin_classes = _thin_classes(fingerprint, min(1.0, factor))
    context_first = thin and not large and fingerprint.share_of(context) > fingerprint.share_of(thin_classes)
    plan.facts["context_classes"] = context
    plan.facts["thin_classes"] = thin_classes
    if imposed is not None:
        plan.reasons["_sampling"] = (
            f"race candidate: crops at native resolution, tiles to predict ({width})"
            if imposed
            else f"race candidate: whole photos resized ({width})"
        )
        return imposed
    if context_first:
        plan.reasons["_sampling"] = (
            f"whole photos resized: {width}, but {', '.join(context)} ({fingerprint.share_of(context):.0%} "
            f"of the pixels) {'needs' if len(context) == 1 else 'need'} context a {window} px crop cannot "
            f"hold (regions thicker than {CONTEXT_THICKNESS:.0%} of it and larger than it), more than the "
            f"thin {', '.join(thin_classes) or 'structures'} ({fingerprint.share_of(thin_classes):.1%})"
        )
    elif thin:
        plan.reasons["_sampling"] = f"crops at native resolution, tiles to predict: {width}"
    elif large:
        plan.reasons["_sampling"] = (
            f"crops at native resolution, tiles to predict: {side}: resizing would discard most pixels"
        )
    else:
        plan.reasons["_sampling"] = f"whole photos resized: {width}, and {side}"
    return (thin or large) and not context_first


def _thin_classes(fingerprint: Fingerprint, factor: float) -> list[str]:
    """The classes (of at least ``MIN_CLASS_SHARE`` of the pixels) narrower than ``thin_px`` once
    photos are scaled by ``factor``."""
    return [
        name
        for name, width, share in zip(
            fingerprint.class_names, fingerprint.class_width_px, fingerprint.class_share, strict=True
        )
        if width is not None and share >= MIN_CLASS_SHARE and width * factor < RULES["thin_px"]
    ]


def _race_candidates(
    plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool
) -> list[dict[str, Any]]:
    """The plans worth racing, the rules' first, in order of what they are expected to be worth: the
    other sampling where context and thinness (or photo size) disagree (worth 0.11 mean IoU on real
    street scenes), then class weights where some classes are rare. Each is ``name``, the
    ``settings`` it changes in the rules' plan, and the ``reason`` it is raced."""
    first: dict[str, Any] = {
        "name": _sampling_name(plan, request, crops),
        "settings": {},
        "reason": "the rules' first choice",
    }
    candidates = [first]
    context, thin = plan.facts.get("context_classes") or [], plan.facts.get("thin_classes") or []
    large = fingerprint.short_side > RULES["large_photo_factor"] * _sizes(fingerprint, False)[0]
    if "crop_size" not in request.chosen and context and (thin or large):
        other = Plan("auto")
        try:
            _choose(other, request, fingerprint, not crops)
        except UsageError as error:  # the budget holds no epoch of it
            plan.facts["race_left_out"] = f"{'crops' if not crops else 'resizing'}: {error}"
        else:
            candidates.append(
                {
                    "name": _sampling_name(other, request, not crops),
                    "settings": _changed(plan, other, request),
                    "reason": f"{', '.join(context)} {'needs' if len(context) == 1 else 'need'} context a "
                    f"crop cannot hold; {', '.join(thin) or 'the photos'} "
                    f"{'need native resolution' if thin else 'are large'}",
                    "expected_steps": other.facts.get("expected_steps"),
                }
            )
    rare = fingerprint.rare_classes()
    if rare and not {"loss", "loss_options"} & request.chosen and plan.settings.get("loss") == "ce_dice":
        weights = class_weights(fingerprint)
        candidates.append(
            {
                "name": f"{first['name']}, class weights",
                "settings": {"loss_options": {"class_weights": weights}},
                "reason": f"rare classes ({', '.join(rare)}, each under {RARE_SHARE:.0%} of the pixels): "
                "cross-entropy and Dice weighted by (median share / class share) ** "
                f"{RULES['class_weight_power']:g}",
            }
        )
    return candidates[: RULES["race_candidates"]]


def class_weights(fingerprint: Fingerprint) -> list[float]:
    """Each class's weight from its share of the pixels: (median share / share) ** ``class_weight_power``,
    within ``class_weight_bounds``, rounded to 3 digits (a class with no pixels: the upper bound)."""
    low, high = RULES["class_weight_bounds"]
    shares = sorted(fingerprint.class_share)
    median = (shares[(len(shares) - 1) // 2] + shares[len(shares) // 2]) / 2
    weights = []
    for share in fingerprint.class_share:
        weight = high if share <= 0 else (median / share) ** RULES["class_weight_power"]
        weights.append(round(min(high, max(low, weight)), 3))
    return weights


def _sampling_name(plan: Plan, request: PlanRequest, crops: bool) -> str:
    def setting(key: str) -> Any:
        return plan.settings.get(key, request.values.get(key))

    if crops:
        return f"crops {setting('crop_size')} px, tiles {setting('tile') or 2 * setting('crop_size')} px"
    return f"whole photos resized to {setting('image_size')} px"


def _changed(plan: Plan, other: Plan, request: PlanRequest) -> dict[str, Any]:
    """The settings ``other`` changes in ``plan`` (a setting only ``plan`` chose goes back to the value
    beneath the plan)."""
    planned = [key for key in other.settings] + [key for key in plan.settings if key not in other.settings]
    keys = [key for key in planned if key not in ("time_budget", "epochs")]
    changed = {}
    for key in keys:
        value = other.settings[key] if key in other.settings else request.values.get(key)
        if plan.settings.get(key, request.values.get(key)) != value:
            changed[key] = value
    return changed


def _folds(plan: Plan, request: PlanRequest) -> None:
    """``plan.facts["folds"]``: how many folds the budget pays for (``segkit run`` trains them unless
    ``--folds`` says how many), and why: each fold trains on a K-th of the budget, so folds pay only
    when a K-th still holds ``fold_min_steps`` steps at the planned size. A run whose ``--epochs`` the
    user gave trains no more steps than those epochs hold."""
    steps, folds, least = plan.facts.get("expected_steps") or 0, RULES["folds"], RULES["fold_min_steps"]
    epochs = plan.facts.get("expected_epochs") or 0
    if "epochs" in request.chosen and epochs > request.values["epochs"]:
        steps = round(steps * request.values["epochs"] / epochs)
    if steps / folds >= least:
        plan.facts["folds"] = {
            "folds": folds,
            "why": f"~{steps} steps fit the budget: each of {folds} folds keeps ~{steps // folds} "
            f"(>= {least}, past where one run was measured still gaining), for an ensemble, choices made "
            "out of fold and the folds' spread",
        }
    else:
        plan.facts["folds"] = {
            "folds": 1,
            "why": f"one run: ~{steps} steps fit the budget, {folds} folds would keep ~{steps // folds} each "
            f"(under {least}: each fold would stop far from where one run gets)",
        }


def _race(plan: Plan, request: PlanRequest, candidates: list[dict[str, Any]]) -> None:
    """``plan.facts["race"]``: the candidates and the race's schedule (``race_schedule``), or why there is
    no race: one candidate, ``--no-race``, or a budget whose first slices would hold fewer than
    ``race_min_steps`` steps (the last candidates are dropped until they hold enough)."""
    if len(candidates) < 2:
        plan.facts["race"] = {"off": "nothing to race: the data leaves one reasonable plan"}
        return
    names = "; ".join(candidate["name"] for candidate in candidates)
    if plan.facts.get("folds", {}).get("folds", 1) > 1:
        plan.facts["race"] = {
            "off": f"the plan trains folds, each the rules' first choice (would race: {names})"
        }
        return
    if not request.values.get("race", True):
        plan.facts["race"] = {"off": f"--no-race: the rules' first choice trains alone (would race: {names})"}
        return
    race_s = RULES["race_share"] * _race_seconds(request)
    training_s = _training_seconds(request)
    while len(candidates) > 1:
        slice_s = race_schedule(len(candidates), race_s)[0][1]
        steps = [
            (candidate.get("expected_steps") or plan.facts.get("expected_steps", 0)) * slice_s / training_s
            for candidate in candidates
        ]
        if min(steps) >= RULES["race_min_steps"]:
            break
        candidates = candidates[:-1]
    if len(candidates) < 2:
        plan.facts["race"] = {
            "off": f"budget too short to race {names}: a first slice would hold under "
            f"{RULES['race_min_steps']} steps of each"
        }
        return
    if "progressive_sizes" not in request.chosen:
        # A race scores candidates early: a model still at its first, smaller stage would be judged at
        # the final size it has not trained at.
        one_size = (
            "one size: the race scores each candidate early, when progressive stages would still be small"
        )
        if plan.settings.get("progressive_sizes"):
            plan.choose("progressive_sizes", [], one_size)
        for candidate in candidates:
            if candidate["settings"].get("progressive_sizes"):
                candidate["settings"]["progressive_sizes"] = []
    plan.facts["race"] = {
        "share": RULES["race_share"],
        "seconds": round(race_s, 1),
        "schedule": race_schedule(len(candidates), race_s),
        "candidates": candidates,
    }


def race_schedule(candidates: int, race_s: float) -> list[list[float]]:
    """Successive halving: rounds of ``[candidates in it, seconds each trains in it]``, each round's
    share of ``race_s`` equal, the better half (rounded up) going on, until one is left."""
    counts = [candidates]
    while counts[-1] > 2:
        counts.append(math.ceil(counts[-1] / 2))
    return [[count, round(race_s / len(counts) / count, 1)] for count in counts]


def _race_seconds(request: PlanRequest) -> float:
    """The training budget the race takes its share of: the budget less the planning allowance."""
    budget = float(request.values["time_budget"])
    return budget - planning_allowance(budget)


def _crops_per_photo(fingerprint: Fingerprint, size: int) -> int:
    """Crops of ``size`` an epoch cuts from a median photo (about its area over the crop's, 1 to 64, as
    the run counts them)."""
    return max(1, min(64, round(fingerprint.height[1] * fingerprint.width[1] / size**2)))


def _steps_per_epoch(fingerprint: Fingerprint, batch: int, crops: bool, size: int) -> int:
    """Training steps (batches) in one epoch of the training split at ``size``."""
    items = fingerprint.images * (_crops_per_photo(fingerprint, size) if crops else 1)
    return max(1, items // batch)


def _image_sizes_and_tiles(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    """The final image (or crop) size: the largest candidate, up to the median photo's short side, at
    which the budget leaves ``min_steps`` steps and one epoch (else the smallest), from a step timed at
    ``reference_size`` scaled by pixels, and then the chosen size timed itself (stepping down while it
    falls short) when the planning allowance has room; a budget too short for one epoch is refused;
    then, for crops, the tile and crop settings (``_crop_settings``), or, for resized photos, the
    progressive sizes before it."""
    values = request.values
    batch = values["batch_size"] if "batch_size" in request.chosen else plan.settings["batch_size"]
    key = "crop_size" if crops else "image_size"
    sizes = _sizes(fingerprint, crops)
    budget = _training_seconds(request)
    reference_size = _reference_size(fingerprint, crops)

    def candidate(size: int) -> Candidate:
        return _candidate(plan, request, fingerprint, size)

    reference = request.time(candidate(reference_size))
    _record(plan, reference)
    measured = {reference_size: reference.step_s}

    def timed(size: int) -> bool:
        """Time ``size`` if the planning allowance has room (else its step stays scaled)."""
        if size not in measured:
            found = request.time_side_by_side([candidate(size)], optional=True)
            if found is not None:
                measured[size] = found[0].step_s
                _record(plan, found[0])
        return size in measured

    def step_s(size: int) -> float:
        """A step's seconds at ``size``: measured, or the reference step's scaled by pixels."""
        return measured.get(size, reference.step_s * (size / reference_size) ** 2)

    data_s = _data_seconds_per_step(plan, request, batch, crops)

    def loop_s(size: int, stage_cost: float) -> float:
        """A training step's seconds in the run at ``size``: the timed step (times ``stage_cost``, the
        share of its pixels the stages average), the loop's extras, the data and validation's share."""
        loop = RULES["loop_factor"]["crops" if crops else "resize"]
        return (step_s(size) * stage_cost * loop + data_s) * _validation_factor(crops)

    def steps(size: int) -> float:
        """Optimizer steps expected in the budget at ``size``."""
        stage_cost = 1.0 if crops else sum((s / size) ** 2 for s in _stages(size)) / len(_stages(size))
        return budget / loop_s(size, stage_cost)

    def needed(size: int) -> int:
        return max(RULES["min_steps"], _steps_per_epoch(fingerprint, batch, crops, size))

    if key in request.chosen:
        chosen = values[key]
        timed(chosen)
        plan.facts["expected_steps"] = round(max(0.0, steps(chosen)))
    else:
        fitting = [size for size in sizes if steps(size) >= needed(size)]
        chosen = fitting[-1] if fitting else sizes[0]
        # Steps do not scale exactly with pixels: the chosen size is timed itself, and a smaller one
        # taken while it falls short.
        while timed(chosen) and chosen != sizes[0] and steps(chosen) < needed(chosen):
            chosen = sizes[sizes.index(chosen) - 1]
        plan.facts["expected_steps"] = round(max(0.0, steps(chosen)))
        how = (
            f"{step_s(chosen):.2f} s a step of {batch} at {chosen} px measured here"
            if chosen in measured
            else f"{step_s(chosen):.2f} s a step of {batch} at {chosen} px, scaled from the "
            f"{reference_size} px step (no time left in the planning allowance to time it)"
        )
        reason = _size_reason(plan, how, chosen, sizes, steps, needed, crops, fingerprint.short_side)
        plan.choose(key, chosen, reason)
    _refuse_a_budget_too_short(request, fingerprint, batch, crops, chosen, step_s(chosen), data_s)
    if crops:
        _crop_settings(plan, request, fingerprint, chosen)
    else:
        stages = _stages(chosen)
        if "progressive_sizes" not in request.chosen:
            plan.choose(
                "progressive_sizes",
                stages,
                f"progressive resizing: early epochs at {', '.join(map(str, stages[:-1]))} px, cheaper, "
                f"so more epochs fit the budget, then {chosen} px"
                if len(stages) > 1
                else f"one size: {chosen} px leaves no smaller stage of at least 32 px",
            )
        if "image_size" not in request.chosen:
            plan.settings["image_size"] = chosen


def _size_reason(
    plan: Plan,
    how: str,
    chosen: int,
    sizes: list[int],
    steps: Callable[[int], float],
    needed: Callable[[int], int],
    crops: bool,
    short_side: float,
) -> str:
    """Why ``chosen``: the steps the budget leaves there, and what the next size up would leave (or why
    there is none), or that none leaves enough."""
    expected = steps(chosen)
    enough = f"{needed(chosen)} steps" + (" (one epoch)" if needed(chosen) > RULES["min_steps"] else "")
    if expected < needed(chosen):
        why = f"under {enough} even at the smallest size, so the smallest"
    elif chosen != sizes[-1]:
        larger = sizes[sizes.index(chosen) + 1]
        why = f"the largest size leaving >= {enough}: {larger} px would leave ~{steps(larger):.0f}"
    elif chosen != RULES["crop_sizes" if crops else "resize_sizes"][-1]:
        why = f">= {enough}; no larger size: photos are {short_side:.0f} px on the short side, never enlarged"
    else:
        why = f">= {enough} even at the largest size auto tries"
    reason = f"{how}: ~{expected:.0f} steps fit the budget, {why}"
    return f"{plan.reasons['_sampling']}; {reason}" if crops else reason


def _training_seconds(request: PlanRequest) -> float:
    """Seconds of the budget for training steps: the budget less the planning allowance (a fixed share,
    so the plan does not depend on how long planning happened to take) and the ``overhead``."""
    budget = float(request.values["time_budget"])
    return (budget - planning_allowance(budget)) * (1 - RULES["overhead"])


def _refuse_a_budget_too_short(
    request: PlanRequest,
    fingerprint: Fingerprint,
    batch: int,
    crops: bool,
    size: int,
    step_s: float,
    data_s: float,
) -> None:
    """A run whose budget cannot hold one epoch would train nothing: refused here, before any run folder
    exists, with the shortest budget that holds planning, the first epoch (at the first progressive
    stage) and the ``overhead``."""
    budget = float(request.values["time_budget"])
    first_stage = size if crops else _stages(size)[0]
    loop = RULES["loop_factor"]["crops" if crops else "resize"]
    per_step = step_s * (first_stage / size) ** 2 * loop + data_s
    epoch_steps = _steps_per_epoch(fingerprint, batch, crops, size)
    epoch_s = epoch_steps * per_step * _validation_factor(crops) / (1 - RULES["overhead"])
    spent = request.spent_s()
    if budget >= epoch_s + max(spent, planning_allowance(budget)):
        return
    shortest = epoch_s + max(spent, planning_allowance(epoch_s))
    for _ in range(20):  # the allowance grows with the budget: a few rounds settle it
        shortest = epoch_s + max(spent, planning_allowance(shortest))
    given = (
        f"--time-budget {format_seconds(budget)}"
        if "time_budget" in request.chosen
        else f"auto's default budget ({RULES['default_budget']})"
    )
    raise UsageError(
        f"{given} is too short for one epoch of this plan: {epoch_steps} step(s) of {batch} "
        f"{'crops' if crops else 'photos'} at {first_stage} px, ~{per_step:.2f} s each here, data included "
        f"(~{epoch_s:.0f} s with validation and a {RULES['overhead']:.0%} margin), after "
        f"{max(spent, planning_allowance(shortest)):.0f} s of planning; give --time-budget "
        f"{_round_up(shortest)} or more"
    )


def _round_up(seconds: float) -> str:
    """A budget of at least ``seconds``, as ``--time-budget`` takes it: whole seconds up to 10 minutes,
    whole minutes beyond."""
    return f"{math.ceil(seconds)}s" if seconds <= 600 else f"{math.ceil(seconds / 60)}m"


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
            "tile",
            tile,
            "validation and prediction at native resolution by tiles of twice the crop"
            if tile == 2 * crop
            else f"validation and prediction at native resolution by tiles of {tile} px: photos are "
            f"{fingerprint.short_side:.0f} px on the short side, under twice the crop",
        )
    if "progressive_sizes" not in chosen:
        plan.choose("progressive_sizes", [], "no progressive crop sizes: smaller crops validated poorly")
    if "foreground_fraction" not in chosen:
        foreground = fingerprint.foreground_fraction[1]
        sparse = foreground < RULES["sparse_foreground"]
        plan.choose(
            "foreground_fraction",
            0.5 if sparse else 0.33,
            f"half the crops centred on foreground: it is sparse ({foreground:.2%} of a median image, "
            f"under {RULES['sparse_foreground']:.0%})"
            if sparse
            else f"a third of the crops centred on foreground (nnU-Net's share): foreground is "
            f"{foreground:.1%} of a median image, not sparse (under {RULES['sparse_foreground']:.0%})",
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


def _memory_layout(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    """channels_last or NCHW for training on a CPU: channels_last only where steps timed side by side say
    it is faster by at least ``channels_last_gain`` (on CUDA the run's own default, channels_last,
    stands). NCHW, the CPU's training default, stays when the planning allowance leaves no time to
    compare them or only their first (untimed) steps were taken."""
    if "channels_last" in request.chosen or request.device.type != "cpu":
        return
    size = _reference_size(fingerprint, crops)
    reference = _candidate(plan, request, fingerprint, size)
    both = request.time_side_by_side(
        [replace(reference, channels_last=False), replace(reference, channels_last=True)], optional=True
    )
    if both is None:
        plan.choose(
            "channels_last",
            False,
            f"NCHW, the CPU's training default: no time left in the planning allowance "
            f"({request.allowance_s:.0f} s) to time channels_last against it",
        )
        return
    nchw, nhwc = both
    _record(plan, nchw)
    _record(plan, nhwc)
    took = (
        f"a training step at {size} px took {nhwc.step_s:.2f} s in channels_last and "
        f"{nchw.step_s:.2f} s in NCHW here"
    )
    if min(nchw.steps, nhwc.steps) == 0:
        plan.choose(
            "channels_last",
            False,
            f"NCHW, the CPU's training default: {took}, from one untimed step each (the planning "
            "allowance ran out), too rough to switch on",
        )
        return
    gain = 1 - nhwc.step_s / nchw.step_s
    margin = RULES["channels_last_gain"]
    rule = f"channels_last must be {margin:.0%} faster to be chosen: timings on a busy machine vary"
    if gain >= margin:
        why = f"channels_last: {took}, {gain:.0%} faster ({rule})"
    elif gain > 0:
        why = f"NCHW: {took}; channels_last only {gain:.0%} faster ({rule})"
    else:
        why = f"NCHW: {took}; channels_last no faster ({rule})"
    plan.choose("channels_last", gain >= margin, why)


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
    per_photo = _crops_per_photo(fingerprint, size) if crops else 1
    epochs = plan.facts.get("expected_steps", 0) * batch / max(1, fingerprint.images * per_photo)
    plan.facts["expected_epochs"] = round(epochs, 1)
    limit = RULES["strong_augment_epochs"]
    passes = f"~{epochs:.0f} passes over the photos expected"
    if epochs > limit and fingerprint.task != "multiclass":
        plan.choose("augment", "strong", f"{passes}, over {limit}: stronger augmentation against overfitting")
    elif epochs > limit:
        plan.choose(
            "augment",
            "default",
            f"{passes}, over {limit}, but multi-class scenes: the strong pipeline's vertical flips and "
            "shears make unnatural ones; flips, small rotations and colour jitter",
        )
    else:
        plan.choose(
            "augment",
            "default",
            f"{passes}, not over {limit}: flips, small rotations and colour jitter",
        )


def _inference(plan: Plan, request: PlanRequest, fingerprint: Fingerprint, crops: bool) -> None:
    chosen = request.chosen
    thresholded = fingerprint.task != "multiclass"
    if "calibrate_threshold" not in chosen:
        plan.choose(
            "calibrate_threshold",
            thresholded,
            f"{fingerprint.task}: threshold picked on the validation split"
            if thresholded
            else "multi-class: argmax, no threshold",
        )
    if "tta" not in chosen:
        plan.choose("tta", True, "flip test-time augmentation")
    objects = fingerprint.objects_per_image
    if fingerprint.task != "binary":
        reason = f"{fingerprint.task}: several classes per image, clean-up would delete true parts"
    elif crops:
        reason = "crops and tiles (thin structures or large photos): clean-up would delete true parts"
    elif objects > RULES["single_object"]:
        reason = f"median {objects:g} objects per image: keeping the largest would delete true ones"
    elif fingerprint.empty_share >= 0.5:
        reason = (
            f"{fingerprint.empty_share:.0%} of the images have no foreground: keeping the largest "
            "would keep noise there"
        )
    else:
        reason = f"one compact object per image (median {objects:g}): fill its holes, drop specks"
    single = reason.startswith("one compact")
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
