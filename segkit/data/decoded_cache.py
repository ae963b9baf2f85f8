"""Decoded photos kept in memory, so that a photo read every epoch (or cut into many crops) is decoded
once per run."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Decoded photos a split cut into crops keeps in memory, per process (each loader worker has its own).
DECODED_CACHE_BYTES = 1_500_000_000


class DecodedCache:
    """Decoded photos and their labels by photo file, up to ``limit`` bytes (then no more are kept).

    A split cut into crops keeps one of its own (each photo gives many crops an epoch). The engine
    gives the splits it reads every epoch in its own process (no loader workers) one shared cache,
    which outlives the train split's rebuilds at each progressive size: from the second epoch on, no
    photo is decoded again."""

    def __init__(self, limit: int = DECODED_CACHE_BYTES) -> None:
        self.limit = limit
        self.bytes = 0
        self._items: dict[str, tuple[Any, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> tuple[Any, np.ndarray] | None:
        return self._items.get(key)

    def put(self, key: str, image: Any, labels: np.ndarray) -> None:
        size = image.width * image.height * len(image.getbands()) + labels.nbytes
        if key not in self._items and self.bytes + size <= self.limit:
            image.load()
            self._items[key] = (image, labels)
            self.bytes += size
