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
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.components import get_component
from segkit.config.resolve import ResolvedConfig, resolve_run_config
from segkit.errors import UsageError

__all__ = ["Plan", "PlanRequest", "describe_plan", "make_plan", "resolve_planned_config", "PLAN_FILE"]

#: The plan a run was started from, in its run folder.
PLAN_FILE = "plan.json"


@dataclass
class Plan:
    """A planner's choices: ``settings`` (names as in ``segkit.config.settings``), the ``reasons`` for them,
    ``facts`` it based them on (fingerprint, timings, estimates: JSON-friendly) and the ``seconds``
    planning took (counted in the run's time budget)."""

    planner: str
    settings: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def choose(self, key: str, value: Any, reason: str) -> None:
        self.settings[key] = value
        self.reasons[key] = reason

    def to_dict(self) -> dict[str, Any]:
        return {
            "planner": self.planner,
            "seconds": round(self.seconds, 2),
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
    or by flag (a planner should plan around them: the user's choice wins anyway)."""

    values: dict[str, Any]
    chosen: frozenset[str]
    started: float = field(default_factory=time.monotonic)
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_s(self) -> float | None:
        return self.values.get("time_budget")

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

    def time(self, candidate):
        """``segkit.planning.machine.Timing`` of a ``Candidate`` on this run's device, measured once."""
        return self.time_side_by_side([candidate])[0]

    def time_side_by_side(self, candidates):
        """Timings of candidates to compare, their steps taken in turn (``time_side_by_side``);
        each is measured once (a candidate timed before keeps its timing)."""
        missing = [candidate for candidate in candidates if f"time:{candidate}" not in self._cache]
        if missing:
            from segkit.planning.machine import time_side_by_side

            steps = 3 if len(missing) > 1 else 2
            for timing in time_side_by_side(missing, self.device, steps, self.amp_dtype):
                self._cache[f"time:{timing.candidate}"] = timing
        return [self._cache[f"time:{candidate}"] for candidate in candidates]


def resolve_planned_config(
    flags: Mapping[str, Any], config_file: Path | None, recipe: str | None
) -> ResolvedConfig:
    """``segkit.config.resolve.resolve_run_config`` with planners: a recipe that names one (``--recipe auto``)
    is planned here, around the user's layers (what ``segkit run`` and ``segkit plan`` resolve)."""
    return resolve_run_config(flags, config_file, recipe, plan=make_plan)


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
    plan = planner(request)
    if not isinstance(plan, Plan):
        raise UsageError(f"planner {name!r} returned {type(plan).__name__}, not a segkit.planning.Plan")
    plan.seconds = time.monotonic() - request.started
    return plan


def describe_plan(plan: Plan, sources: dict[str, str]) -> list[str]:
    """The printed plan: what it read, what it measured, each choice and why; a choice the config
    file or a flag overrode says so."""
    overridden = {
        key: source
        for key, source in sources.items()
        if key in plan.settings and not source.startswith("plan ")
    }
    lines = [f"Plan ({plan.planner}, {plan.seconds:.1f} s, counted in the time budget):"]
    if "fingerprint_summary" in plan.facts:
        lines.append(f"  data: {plan.facts['fingerprint_summary']}")
    if "_sampling" in plan.reasons:
        lines.append(f"  {plan.reasons['_sampling']}")
    for candidate, seconds in plan.facts.get("timings", {}).items():
        lines.append(f"  timed: {candidate}: {seconds:.2f} s a training step")
    if "pretrained" in plan.facts:
        lines.append(f"  {plan.facts['pretrained']}")
    return lines + plan.table(overridden)
