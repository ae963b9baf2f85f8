"""Planning a run from the data, the machine and the time: planners, a plugin kind.

A recipe (``--recipe NAME``) is either a fixed dict of settings (``seed``, ``budget``) or a
**planner**: a function registered with ``register_planners`` that looks at the request (the
settings the user fixed, the training split, the device, the time budget) and returns a ``Plan``,
a dict of settings with a reason for each. The plan takes the recipe's place among the layers, so
the config file and flags still override any of its choices. ``--recipe auto`` is segkit's own
planner (``segkit.planning.auto``); ``segkit plan`` prints a plan without training.

A planner plugin::

    from segkit.planning import Plan

    def careful(request):
        fingerprint = request.fingerprint()          # cached beside the data
        plan = Plan("careful")
        plan.choose("image_size", 256, f"photos are {fingerprint.short_side:.0f} px on the short side")
        return plan

    @segkit.hookimpl
    def register_planners(register):
        register("careful", careful, description="256 px, whatever the data")
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.components import get_component
from segkit.config.resolve import ResolvedConfig, resolve_run_config
from segkit.errors import UsageError

__all__ = [
    "Plan",
    "PlanRequest",
    "describe_plan",
    "make_plan",
    "planning_allowance",
    "resolve_planned_config",
    "PLAN_FILE",
]

#: The plan a run was started from, in its run folder.
PLAN_FILE = "plan.json"

#: Planning (reading the data, timing steps) is counted in the run's time budget, so it may take only
#: this share of it, at least ``PLANNING_FLOOR_S`` (one timed step needs a second or two on a CPU) and
#: at most ``PLANNING_CAP_S`` (the whole timing of ``--recipe auto`` takes about 10 s on an idle 2-core
#: CPU): 3 s of a 1-minute budget, 18 s of 10 minutes, 27 s of 15, 30 s of an hour.
PLANNING_SHARE = 0.03
PLANNING_FLOOR_S = 3.0
PLANNING_CAP_S = 30.0


def planning_allowance(budget_s: float | None) -> float:
    """Seconds planning may take of a ``budget_s`` budget (no budget: ``PLANNING_CAP_S``)."""
    if budget_s is None:
        return PLANNING_CAP_S
    return min(PLANNING_CAP_S, max(PLANNING_FLOOR_S, PLANNING_SHARE * float(budget_s)))


@dataclass
class Plan:
    """A planner's choices: ``settings`` (names as in ``segkit.config.settings``), the ``reasons`` for them,
    ``facts`` it based them on (fingerprint, timings, estimates: JSON-friendly), the ``seconds``
    planning took (counted in the run's time budget), the ``allowance_s`` it was given
    (``planning_allowance``) and the ``budget_s`` it planned for."""

    planner: str
    settings: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    allowance_s: float | None = None
    budget_s: float | None = None

    def choose(self, key: str, value: Any, reason: str) -> None:
        self.settings[key] = value
        self.reasons[key] = reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "planner": self.planner,
            "seconds": round(self.seconds, 2),
            "allowance_s": None if self.allowance_s is None else round(self.allowance_s, 2),
            "budget_s": self.budget_s,
            "settings": self.settings,
            "reasons": self.reasons,
            "facts": self.facts,
        }

    def write(self, run_dir: Path) -> None:
        from segkit.atomic_files import atomic_write_text

        atomic_write_text(Path(run_dir) / PLAN_FILE, json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    def table(self, overridden: dict[str, str] | None = None) -> list[str]:
        """Lines of a short table: each choice, its value and why (and what overrode it)."""
        from segkit.config.settings import format_value

        overridden = overridden or {}
        width = max((len(key) for key in self.settings), default=0)
        value_width = max((len(format_value(value)) for value in self.settings.values()), default=0)
        lines = []
        for key, value in self.settings.items():
            note = f" [overridden by {overridden[key]}]" if key in overridden else ""
            lines.append(
                f"  {key:<{width}}  {format_value(value):<{value_width}}  {self.reasons.get(key, '')}{note}"
            )
        return lines


@dataclass
class PlanRequest:
    """What a planner is asked: ``values`` are the settings resolved without any recipe (defaults, the
    dataset's defaults, the config file, the flags), ``chosen`` the names the user set in the config file
    or by flag (a planner should plan around them: the user's choice wins anyway).

    Planning is time-boxed: ``allowance_s`` (``planning_allowance`` of the budget) from ``started`` by
    ``clock``. Timed steps stop at the box's end (``time_in_turn``) and a timing asked for as
    ``optional`` is left out when it would not fit (``skipped`` names it); the planner uses what it has.
    Tests give a ``clock`` and replace ``training_step`` to plan on timings of their own."""

    values: dict[str, Any]
    chosen: frozenset[str]
    started: float = math.nan  # set from ``clock`` when not given
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, Any] = field(default_factory=dict)
    #: Timings the planning box left out, described.
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if math.isnan(self.started):
            self.started = self.clock()

    @property
    def budget_s(self) -> float | None:
        return self.values.get("time_budget")

    @property
    def allowance_s(self) -> float:
        """Seconds planning may take (``planning_allowance`` of the budget)."""
        return planning_allowance(self.budget_s)

    def spent_s(self) -> float:
        """Seconds planning has taken so far."""
        return self.clock() - self.started

    def left_s(self) -> float:
        """Seconds left of the planning box (negative once past it)."""
        return self.allowance_s - self.spent_s()

    @property
    def device(self):
        if "device" not in self._cache:
            from segkit.execution.device import resolve_device

            self._cache["device"] = resolve_device(self.values["device"])
        return self._cache["device"]

    @property
    def amp_dtype(self):
        """The autocast dtype the run will train under (``--amp`` on this device; None: fp32), which
        timed steps use too: a bf16 step on a GPU can take half an fp32 one's time."""
        if "amp" not in self._cache:
            from segkit.execution.device import resolve_amp

            self._cache["amp"] = resolve_amp(self.values["amp"], self.device)
        return self._cache["amp"]

    def train_dataset(self) -> Any:
        """The training split as the run will build it (resized, no crops), built once."""
        if "train" not in self._cache:
            from segkit.data.splits import build_split

            self._cache["train"] = build_split(self.values, "train", self.values["image_size"])
        return self._cache["train"]

    def fingerprint(self):
        """The training split's ``segkit.planning.fingerprint.Fingerprint`` (cached beside the data)."""
        if "fingerprint" not in self._cache:
            from segkit.planning.fingerprint import fingerprint

            self._cache["fingerprint"] = fingerprint(self.train_dataset())
        return self._cache["fingerprint"]

    def item_seconds(self) -> float:
        """Seconds to make one training item of the train split in this process, photos decoded
        (``segkit.planning.machine.time_items``), measured once."""
        if "item_s" not in self._cache:
            from segkit.planning.machine import time_items

            self._cache["item_s"] = time_items(self.train_dataset())
        return self._cache["item_s"]

    def loader_workers(self) -> int:
        """The loader workers the run will use (``--workers``, or what auto means here)."""
        from segkit.data.splits import resolve_workers

        return resolve_workers(self.values["workers"], self.train_dataset(), self.device)

    def training_step(self, candidate):
        """A function taking one training step of ``candidate`` on this run's device and autocast and
        returning its seconds (``segkit.planning.machine.training_step``)."""
        from segkit.planning.machine import training_step

        return training_step(candidate, self.device, self.amp_dtype)

    def time(self, candidate):
        """``segkit.planning.machine.Timing`` of a ``Candidate`` on this run's device, measured once;
        past the planning box, from its first (untimed) step only."""
        return self.time_side_by_side([candidate])[0]

    def time_side_by_side(self, candidates, optional: bool = False):
        """Timings of candidates to compare, their steps taken in turn (``time_in_turn``); each is
        measured once (a candidate timed before keeps its timing). ``optional``: None, timing none,
        when their expected seconds (scaled from a like candidate timed before) do not fit what is left
        of the planning box, or when it ran out before each had a first step (those timed are kept)."""
        from segkit.planning.machine import time_in_turn

        missing = [candidate for candidate in candidates if f"time:{candidate}" not in self._cache]
        rounds = 3 if len(missing) > 1 else 2
        if missing and optional and self.expected_seconds(missing, rounds) > self.left_s():
            self.skipped.extend(candidate.describe() for candidate in missing)
            return None
        if missing:
            # Each model is built just before its first step: one the planning box leaves out costs nothing.
            trainers: list[Callable[[], float]] = [_Lazy(self.training_step, c) for c in missing]
            deadline = self.started + self.allowance_s
            required = 1 if optional else len(missing)
            for timing in time_in_turn(missing, trainers, rounds, deadline, self.clock, required):
                self._cache[f"time:{timing.candidate}"] = timing
        if any(f"time:{candidate}" not in self._cache for candidate in candidates):
            self.skipped.extend(c.describe() for c in candidates if f"time:{c}" not in self._cache)
            return None
        return [self._cache[f"time:{candidate}"] for candidate in candidates]

    def expected_seconds(self, candidates, rounds: int) -> float:
        """Seconds timing ``candidates`` should take (a first step and ``rounds`` more of each), each
        scaled by its pixels from a timed candidate that differs only in size and layout (0 when none
        was timed: nothing to go by)."""
        total = 0.0
        for candidate in candidates:
            like = self.like_timing(candidate)
            if like is not None:
                scale = (candidate.size / like.candidate.size) ** 2
                total += scale * (like.first_s + rounds * like.step_s)
        return total

    def like_timing(self, candidate):
        """A timing taken of a candidate like ``candidate`` (the same but for size and memory layout),
        in its layout if there is one, the nearest in size; None when there is none."""
        from dataclasses import replace

        def same(other) -> bool:
            return replace(other, size=candidate.size, channels_last=candidate.channels_last) == candidate

        def distance(timing) -> tuple[bool, int]:
            return timing.candidate.channels_last != candidate.channels_last, abs(
                timing.candidate.size - candidate.size
            )

        timings = [value for key, value in self._cache.items() if key.startswith("time:")]
        return min((timing for timing in timings if same(timing.candidate)), key=distance, default=None)


class _Lazy:
    """A candidate's training step, its model built at the first call (building is not timed)."""

    def __init__(self, build: Callable[[Any], Callable[[], float]], candidate: Any) -> None:
        self.build, self.candidate = build, candidate
        self.step: Callable[[], float] | None = None

    def __call__(self) -> float:
        if self.step is None:
            self.step = self.build(self.candidate)
        return self.step()


def resolve_planned_config(
    flags: Mapping[str, Any],
    config_file: Path | None,
    recipe: str | None,
    python: tuple[Mapping[str, Any], str] | None = None,
) -> ResolvedConfig:
    """``segkit.config.resolve.resolve_run_config`` with planners: a recipe that names one (``--recipe auto``)
    is planned here, around the user's layers (what ``segkit run``, ``segkit plan`` and ``segkit.train``
    resolve)."""
    return resolve_run_config(flags, config_file, recipe, plan=make_plan, python=python)


def make_plan(name: str, values: dict[str, Any], chosen: frozenset[str]) -> Plan:
    """Run the registered planner ``name`` on the request; its seconds are measured here."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            f"--recipe {name} plans by timing this machine, which each torchrun process would do apart "
            f"(and differently): plan once with `segkit plan --recipe {name} ... --print-config > run.toml`, "
            "then start torchrun with --config run.toml"
        )
    planner: Callable[[PlanRequest], Plan] = get_component("planner", name).factory
    request = PlanRequest(dict(values), chosen)
    return run_planner(name, planner, request)


def run_planner(name: str, planner: Callable[[PlanRequest], Plan], request: PlanRequest) -> Plan:
    """``planner(request)``, with the seconds it took, its allowance and the budget it planned for."""
    plan = planner(request)
    if not isinstance(plan, Plan):
        raise UsageError(f"planner {name!r} returned {type(plan).__name__}, not a segkit.planning.Plan")
    plan.seconds = request.spent_s()
    plan.allowance_s = request.allowance_s
    plan.budget_s = request.budget_s
    return plan


def describe_plan(plan: Plan, sources: dict[str, str]) -> list[str]:
    """The printed plan: what it read, what it measured, each choice and why; a choice the config
    file or a flag overrode says so."""
    overridden = {
        key: source
        for key, source in sources.items()
        if key in plan.settings and not source.startswith("plan ")
    }
    lines = [f"Plan ({plan.planner}): {planning_time(plan)}"]
    if "fingerprint_summary" in plan.facts:
        lines.append(f"  data: {plan.facts['fingerprint_summary']}")
    if "_sampling" in plan.reasons:
        lines.append(f"  {plan.reasons['_sampling']}")
    rough = plan.facts.get("first_step_only", [])
    for candidate, seconds in plan.facts.get("timings", {}).items():
        note = " (its untimed first step only: an overestimate)" if candidate in rough else ""
        lines.append(f"  timed: {candidate}: {seconds:.2f} s a training step{note}")
    if plan.facts.get("not_timed"):
        lines.append(
            f"  not timed (past the planning allowance; estimated from the steps timed): "
            f"{'; '.join(plan.facts['not_timed'])}"
        )
    if "pretrained" in plan.facts:
        lines.append(f"  {plan.facts['pretrained']}")
    folds = plan.facts.get("folds")
    if folds:
        lines.append(f"  folds: {folds['folds']} ({folds['why']}; --folds K decides instead)")
    return lines + describe_race(plan.facts.get("race")) + plan.table(overridden)


def describe_race(race: dict[str, Any] | None) -> list[str]:
    """The race's lines in a printed plan: the candidates, why each, and the schedule; or why none."""
    if not race:
        return []
    if "off" in race:
        return [f"  race: none ({race['off']})"]
    rounds = ", then ".join(f"{count} x {seconds:g} s" for count, seconds in race["schedule"])
    lines = [
        f"  race: {len(race['candidates'])} candidates train in turn ({rounds}: {race['share']:.0%} of the "
        "budget after planning), scored on the valid split at original resolution; the better half goes "
        "on each round and the best continues with its weights (the losers' time is the race's cost)"
    ]
    for number, candidate in enumerate(race["candidates"], 1):
        changes = ", ".join(f"{key}={value}" for key, value in candidate["settings"].items())
        lines.append(
            f"    {number}. {candidate['name']}: {candidate['reason']}" + (f" [{changes}]" if changes else "")
        )
    return lines


def describe_settings(config: ResolvedConfig) -> list[str]:
    """What a new or resumed run prints before training (``segkit run``, ``segkit.train``): every
    setting with its value and where it came from, then the plan behind them, if any."""
    width = max(len(key) for key, _, _ in config.describe())
    lines = ["Settings (value, and where it came from):"]
    lines += [f"  {key:<{width}} {value:<24} {source}" for key, value, source in config.describe()]
    if config.plan is not None:
        lines += describe_plan(config.plan, config.sources)
    return lines


def planning_time(plan: Plan) -> str:
    """How long planning took, of which budget, and what it was allowed."""
    if plan.budget_s is None or plan.allowance_s is None:
        return f"planning took {plan.seconds:.1f} s"
    share = plan.seconds / plan.budget_s
    return (
        f"planning took {plan.seconds:.1f} s, {share:.0%} of the {format_seconds(plan.budget_s)} budget "
        f"and counted in it (allowed {plan.allowance_s:.0f} s: {PLANNING_SHARE:.0%} of the budget, at least "
        f"{PLANNING_FLOOR_S:.0f} s, at most {PLANNING_CAP_S:.0f} s)"
    )


def format_seconds(seconds: float) -> str:
    """A duration as ``--time-budget`` takes it: ``45s``, ``15m``, ``1.5h``, ``100s``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and (seconds / size * 10) % 1 == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
