"""Progress and the time budget: how far a run is, and whether the next step still fits.

Progress is the fraction of planned optimizer steps done or, under ``--time-budget``, of the budget
spent, whichever is larger; learning-rate schedules and progressive resizing follow it. A step is
only begun when it, and the validation after it, should still end within the budget: the estimate
is the time between the starts of the last two steps (data wait included) plus the last validation.
"""

from __future__ import annotations

import time


class RunClock:
    """``RunClock(total_steps, budget_s, elapsed_before, estimates)``; ask ``next_step_fits()`` before
    each step. A resumed run passes the ``estimates()`` its checkpoint saved, so that its first step
    is judged as the uninterrupted run would have judged it (not as if steps and validation took no
    time, which would begin a step, and validate, past the budget).

    ``pause_at_s``: stop as the budget would at this many seconds of the run (``elapsed()``), the budget
    and schedule unchanged, so that a resume continues exactly where an uninterrupted run would be
    (``--recipe auto``'s race trains each candidate in slices)."""

    def __init__(
        self,
        total_steps: int,
        budget_s: float | None,
        elapsed_before: float = 0.0,
        estimates: dict[str, float] | None = None,
        pause_at_s: float | None = None,
    ) -> None:
        self.total_steps = max(1, total_steps)
        self.budget_s = budget_s
        self.pause_at_s = pause_at_s
        #: True once a step was refused for the pause point, not for the budget.
        self.paused = False
        self.elapsed_before = elapsed_before
        self.started = time.monotonic()
        estimates = estimates or {}
        #: How long the last validation took; a step is only begun when it fits after the step.
        self.validation_seconds = float(estimates.get("validation_s", 0.0))
        self._step_seconds = float(estimates.get("step_s", 0.0))
        self._last_step_started: float | None = None

    def estimates(self) -> dict[str, float]:
        """The durations the budget rule uses (the last step's, the last validation's), for checkpoints."""
        return {"step_s": self._step_seconds, "validation_s": self.validation_seconds}

    def elapsed(self) -> float:
        """Seconds of training, those of the run this one resumes included."""
        return self.elapsed_before + time.monotonic() - self.started

    def progress(self, step: int) -> float:
        """Fraction of the run done after ``step`` optimizer steps, in [0, 1] or beyond at the end."""
        by_steps = step / self.total_steps
        return max(by_steps, self.elapsed() / self.budget_s) if self.budget_s else by_steps

    def start_epoch(self) -> None:
        """The gap across validation and checkpoints is no step's time: forget the last step's start."""
        self._last_step_started = None

    def next_step_fits(self) -> bool:
        """Called as each step begins: False when it would end past the budget (always True without)."""
        now = time.monotonic()
        if self._last_step_started is not None:
            self._step_seconds = now - self._last_step_started
        self._last_step_started = now
        ends = self.elapsed() + self._step_seconds + self.validation_seconds
        over_budget = self.budget_s is not None and self.budget_s > 0 and ends > self.budget_s
        if self.pause_at_s is not None and ends > self.pause_at_s and not over_budget:
            self.paused = True
            return False
        return not over_budget
