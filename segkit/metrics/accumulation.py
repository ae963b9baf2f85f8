"""What every metric accumulator keeps: per-image integer counts in arrival order, with the images'
names, gathered across processes once. The binary accumulator (``segkit.metrics.binary``) keeps four
counts an image, the per-class one (``segkit.metrics.classes``) three a class; both build on this.

Counts are integers on the CPU, so pooled figures are exact sums whatever the batching, the order or
the number of processes; names default to running indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from segkit.errors import UsageError


class PerImageCounts:
    """Per-image counts of shape ``(images, *count_shape)`` and their names.

    A subclass sets ``count_shape`` (in ``__init__``, before ``reset``) and may keep state of its own
    that processes sum (``_extra_state``/``_merge_extra``: the confusion matrix).
    """

    count_shape: tuple[int, ...] = ()

    def reset(self) -> None:
        self._counts: list[torch.Tensor] = []
        self._names: list[str] = []
        self._reduced = False

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        """The images' names, in the order their counts were added."""
        return list(self._names)

    def _add(self, counts: torch.Tensor, names: Sequence[str] | None, verb: str) -> None:
        """Append a batch's ``(N, *count_shape)`` counts; ``verb`` names the public method in errors."""
        if self._reduced:
            raise UsageError(f"{type(self).__name__}.{verb}() after all_reduce(): call reset() first")
        if names is None:
            names = [str(len(self._names) + index) for index in range(len(counts))]
        elif isinstance(names, str) or len(names) != len(counts):
            raise UsageError(f"names must be a list of {len(counts)} names (one per image), got {names!r}")
        self._counts.append(counts.cpu())
        self._names.extend(str(name) for name in names)

    def counts(self) -> torch.Tensor:
        """Every image's counts so far, ``(images, *count_shape)`` int64."""
        if not self._counts:
            return torch.zeros(0, *self.count_shape, dtype=torch.int64)
        if len(self._counts) > 1:
            self._counts = [torch.cat(self._counts)]
        return self._counts[0]

    def _require_images(self) -> torch.Tensor:
        counts = self.counts()
        if len(counts) == 0:
            raise UsageError(
                f"{type(self).__name__}.compute() before any images were added: there are no images to score"
            )
        return counts

    def all_reduce(self) -> None:
        """Gather every process's images when ``torch.distributed`` is initialised (no-op otherwise).

        Afterwards each process holds all images in rank order, so pooled counts are the sum over
        processes and per-image scores cover the whole split. Call it once, after the last update.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if self._reduced:
            raise UsageError(
                f"{type(self).__name__}.all_reduce() called twice: images would be counted twice"
            )
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self.counts().tolist(), list(self._names), self._extra_state()))
        rows = [row for counts, _, _ in gathered for row in counts]
        self._counts = [torch.tensor(rows, dtype=torch.int64).reshape(-1, *self.count_shape)]
        self._names = [name for _, names, _ in gathered for name in names]
        self._merge_extra([extra for _, _, extra in gathered])
        self._reduced = True

    def _extra_state(self) -> Any:
        """What else each process sends in ``all_reduce`` (None: nothing)."""
        return None

    def _merge_extra(self, states: list[Any]) -> None:
        """Combine every process's ``_extra_state`` (in rank order) into this accumulator's."""
