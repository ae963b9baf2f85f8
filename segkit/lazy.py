"""Modules imported on first use, so that ``segkit --help`` and ``segkit plugins`` stay fast.

torchvision takes seconds to import (it pulls in ``torch._dynamo`` through ``torchvision.ops``);
plugin modules are imported at every start, so the ones that need torchvision name it with
``lazy_module`` and pay for the import only when a dataset, augmentation or model is built::

    from segkit.lazy import lazy_module

    v2 = lazy_module("torchvision.transforms.v2")  # imported at the first ``v2.Compose``
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands in for the module ``name``, importing it at the first attribute access."""

    def __init__(self, name: str) -> None:
        self.__dict__["_name"] = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self.__dict__["_name"])

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._module(), attribute)

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_name']!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for ``import name`` that imports it when first used (typed ``Any`` for checkers)."""
    return LazyModule(name)
