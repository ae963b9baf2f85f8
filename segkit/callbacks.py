"""The callback interface: plugins observe training through these events.

A callback factory is registered with ``register_callbacks``; it is called as
``factory(run_dir=Path, **options)`` and returns an object with any of these methods. Every event
receives a ``RunContext`` describing the run. A callback may set ``context.should_stop = True`` to
end training after the current epoch (early stopping does this).

Under torchrun, callbacks live in rank 0 alone (one set of records and logs); the engine gives
their decision to stop, and any error they raise, to every process, which all stop after the same
epoch (``segkit.engine.distributed.on_main``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunContext:
    """What a callback may read about the run. ``config`` is the resolved configuration."""

    run_dir: Path
    config: dict[str, Any]
    model_name: str
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    should_stop: bool = False
    stop_reason: str = ""


class Callback:
    """Base class with no-op events; subclass and override what you need."""

    def on_fit_start(self, context: RunContext) -> None:
        """Before the first epoch (also after a resume)."""

    def on_epoch_end(self, context: RunContext, metrics: dict[str, Any]) -> None:
        """After validation of each epoch. ``metrics`` is the epoch's record (see README)."""

    def on_checkpoint(self, context: RunContext, path: Path, is_best: bool) -> None:
        """After a checkpoint file was written."""

    def on_fit_end(self, context: RunContext) -> None:
        """After the last epoch, or when the run stops early (budget, callback, Ctrl-C)."""

    def on_exception(self, context: RunContext, error: BaseException) -> None:
        """When training fails; flush what you have."""
