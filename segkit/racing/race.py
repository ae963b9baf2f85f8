"""Successive halving over the plan's candidates, then the winner to the end of the budget.

The budget's arithmetic: the race takes ``race["seconds"]`` (R); a candidate trains ``W`` of it if it
wins every round (the sum of one slice a round), so every candidate is given the budget it would have
as the winner, ``B - (R - W)``, and its schedule (warm-up, cosine, progressive sizes) follows that
budget from the start: the winner's schedule simply continues. What the race costs over R (building
each candidate's data and model, scoring at original resolution) comes off the winner's budget when it
resumes, so the whole run still ends within ``B``.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from segkit.config.resolve import ResolvedConfig, resolve_resumed_config
from segkit.engine.trainer import BUDGET_REACHED, RunResult, fit
from segkit.execution.device import resolve_device

Echo = Callable[[str], None]

#: Where the losers' run folders go, inside the winner's.
RACE_FOLDER = "race"


@dataclass
class Entrant:
    """One candidate plan in the race: its settings, its run folder once started, its scores."""

    number: int
    name: str
    config: ResolvedConfig
    candidate: dict[str, Any]
    run_dir: Path | None = None
    score: float = float("-inf")
    #: One entry a round it trained in: the score after it and the seconds of its run so far.
    rounds: list[dict[str, Any]] = field(default_factory=list)
    trained_s: float = 0.0
    last: RunResult | None = None


def train(config: ResolvedConfig, echo: Echo = print, callbacks: Sequence[Any] = ()) -> RunResult:
    """A new run: ``fit`` it, or race its plan's candidates first when the plan holds a race."""
    race = (config.plan.facts.get("race") if config.plan is not None else None) or {}
    if len(race.get("candidates") or []) < 2:
        return fit(config, echo=echo, callbacks=callbacks)
    return Race(config, race, echo, callbacks).run()


def score_of_summary(summary: dict[str, Any], task_kind: str) -> tuple[str, float]:
    """The figure a user is shown first, from an evaluation's summary.json: per-image Dice for a binary
    task, mean IoU over the (foreground) classes, pooled over the split, for the others; at original
    resolution where it was scored."""
    scores = summary.get("original_resolution") or summary["network_resolution"]
    if task_kind == "binary":
        return "Dice (per-image mean)", float(scores["dice_per_image"])
    return "mean IoU (classes, pooled)", float(scores["iou_macro_dataset"])


class Race:
    def __init__(
        self, config: ResolvedConfig, race: dict[str, Any], echo: Echo, callbacks: Sequence[Any]
    ) -> None:
        self.config, self.race, self.echo, self.callbacks = config, race, echo, list(callbacks)
        #: The race's own lines (slices, standings, the winner): none under --quiet, as for epochs.
        self.say: Echo = (lambda _text: None) if config["quiet"] else echo
        self.plan = config.plan
        budget = float(config["time_budget"])
        self.race_s = float(race["seconds"])
        self.schedule = [(int(count), float(seconds)) for count, seconds in race["schedule"]]
        winner_s = sum(seconds for _, seconds in self.schedule)
        #: What every candidate would have as the winner: the budget less the losers' planned share.
        self.candidate_budget = budget - (self.race_s - winner_s)
        self.entrants = [
            self._entrant(number, candidate) for number, candidate in enumerate(race["candidates"], 1)
        ]
        self.metric = ""

    def _entrant(self, number: int, candidate: dict[str, Any]) -> Entrant:
        config = copy.deepcopy(self.config)
        config.plan = self.plan
        config.apply(candidate["settings"], f"plan auto, race candidate {number}")
        budget = {"time_budget": round(self.candidate_budget, 1)}
        config.apply(budget, "plan auto, race: the budget less the losers' share")
        return Entrant(number, candidate["name"], config, candidate)

    def run(self) -> RunResult:
        started = time.monotonic()
        field_ = list(self.entrants)
        elapsed_at = self.plan.seconds
        try:
            for round_number, (count, slice_s) in enumerate(self.schedule, 1):
                field_ = field_[:count]
                elapsed_at += slice_s
                for entrant in field_:
                    self._train_slice(entrant, round_number, elapsed_at)
                field_.sort(key=lambda entrant: entrant.score, reverse=True)
                self.say(self._standings(round_number, field_))
        except KeyboardInterrupt:
            started_dirs = [str(entrant.run_dir) for entrant in self.entrants if entrant.run_dir]
            self.echo(f"Race interrupted; each candidate is a resumable run: {', '.join(started_dirs)}")
            raise
        winner = field_[0]
        overrun = max(0.0, time.monotonic() - started - self.race_s)
        self._finish_record(winner, overrun)
        return self._train_winner(winner, overrun)

    def _train_slice(self, entrant: Entrant, round_number: int, pause_at: float) -> None:
        self.say(
            f"Race, round {round_number} of {len(self.schedule)}: candidate {entrant.number} "
            f"({entrant.name}) trains until {pause_at:.0f} s of its run"
        )
        slice_started = time.monotonic()
        if entrant.run_dir is None:
            result = fit(entrant.config, echo=self.echo, callbacks=self.callbacks, pause_at_s=pause_at)
        else:
            resumed = self._resumed(entrant, {})
            result = fit(
                resumed,
                echo=self.echo,
                resume_dir=entrant.run_dir,
                callbacks=self.callbacks,
                pause_at_s=pause_at,
            )
        entrant.run_dir, entrant.last = result.run_dir, result
        entrant.trained_s += time.monotonic() - slice_started
        scoring_started = time.monotonic()
        self.metric, entrant.score = self._score(entrant.run_dir, round_number)
        entrant.rounds.append(
            {
                "round": round_number,
                "score": round(entrant.score, 4),
                "epochs": len(result.history),
                "seconds": round(time.monotonic() - slice_started, 1),
                "scoring_s": round(time.monotonic() - scoring_started, 1),
            }
        )

    def _resumed(self, entrant: Entrant, flags: dict[str, Any]) -> ResolvedConfig:
        """A candidate's settings to resume it with, each keeping the source it had when the plan chose
        it (a resume would name the run folder for all), so that config.json still says why."""
        assert entrant.run_dir is not None
        resumed = resolve_resumed_config(entrant.run_dir, flags)
        resumed.sources.update(entrant.config.sources)
        if flags:
            resumed.sources["time_budget"] = "plan auto, race: the budget less the losers' and the overrun"
        return resumed

    def _score(self, run_dir: Path, round_number: int) -> tuple[str, float]:
        """The candidate's best.pt on the valid split at original resolution, no TTA or clean-up (the
        plan's own inference choices are the same for every candidate)."""
        from segkit.inference.predictor import load_trained_model
        from segkit.reporting.run_evaluation import evaluate_run

        trained = load_trained_model(run_dir, device=resolve_device(self.config["device"]))
        evaluated = evaluate_run(
            trained,
            split="valid",
            tta=False,
            fill_holes=False,
            keep_largest=False,
            resolution="original",
            boundary=False,
            quiet=True,
            out=run_dir / f"race-valid-round-{round_number}",
            note=lambda _text: None,
        )
        return score_of_summary(evaluated.summary, trained.task.kind)

    def _standings(self, round_number: int, field_: list[Entrant]) -> str:
        going_on = self.schedule[round_number][0] if round_number < len(self.schedule) else 1
        scores = "; ".join(
            f"{entrant.number}. {entrant.name} {entrant.score:.4f}{' (goes on)' if index < going_on else ''}"
            for index, entrant in enumerate(field_)
        )
        return f"Race, round {round_number}: valid {self.metric} at original resolution: {scores}"

    def _finish_record(self, winner: Entrant, overrun: float) -> None:
        """The race in the plan (``plan.json`` of the winner); the losers' folders into its ``race/``,
        checkpoints deleted."""
        assert winner.run_dir is not None
        for entrant in self.entrants:
            if entrant is winner or entrant.run_dir is None:
                continue
            target = winner.run_dir / RACE_FOLDER / entrant.run_dir.name
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(entrant.run_dir), target)
            for checkpoint in target.glob("*.pt"):
                checkpoint.unlink()
            entrant.run_dir = target
        self.plan.facts["race"] = race_record(self.race, self.entrants, winner, self.metric, overrun)
        self.plan.write(winner.run_dir)

    def _train_winner(self, winner: Entrant, overrun: float) -> RunResult:
        """The winner resumes with its weights and schedule, its budget less the race's ``overrun``;
        a budget the race has spent leaves it as it is (said so)."""
        assert winner.run_dir is not None and winner.last is not None
        budget = self.candidate_budget - overrun
        raced = self.plan.seconds + sum(seconds for _, seconds in self.schedule)
        won = f"Race won by candidate {winner.number} ({winner.name})"
        if budget - raced < 1.0:
            self.say(
                f"{won}; the race's set-up and scoring ({overrun:.0f} s beyond its share) spent the rest of "
                f"the budget: it stops here (give a longer --time-budget for a race that pays)"
            )
            last = winner.last
            return RunResult(
                winner.run_dir,
                last.best_dice,
                last.best_epoch,
                last.history,
                BUDGET_REACHED,
                last.metric_description,
            )
        self.say(
            f"{won}; it continues with its weights to {budget:.0f} s of its run (the race's set-up and "
            f"scoring, {overrun:.0f} s beyond its share, come off its budget)"
        )
        resumed = self._resumed(winner, {"time_budget": round(budget, 1)})
        return fit(resumed, echo=self.echo, resume_dir=winner.run_dir, callbacks=self.callbacks)


def race_record(
    race: dict[str, Any], entrants: list[Entrant], winner: Entrant, metric: str, overrun: float
) -> dict[str, Any]:
    """What plan.json keeps of a race: the plan's race, each candidate's scores, seconds and folder,
    the winner, and the cost (the losers' seconds, and the set-up and scoring beyond the race's share)."""
    candidates = []
    for entrant, planned in zip(entrants, race["candidates"], strict=True):
        candidates.append(
            {
                **planned,
                "rounds": entrant.rounds,
                "seconds": round(entrant.trained_s, 1),
                "run_dir": str(entrant.run_dir) if entrant.run_dir else None,
            }
        )
    losers_s = sum(entrant.trained_s for entrant in entrants if entrant is not winner)
    return {
        **race,
        "candidates": candidates,
        "metric": f"valid {metric}, original resolution, best.pt, no TTA or clean-up",
        "winner": winner.number,
        "cost_s": round(losers_s, 1),
        "overrun_s": round(overrun, 1),
    }
