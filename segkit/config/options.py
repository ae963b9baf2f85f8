"""Parsing of ``KEY=VALUE`` options (``--model-option base_channels=16``) into typed values."""

from __future__ import annotations

import ast
import re
from typing import Any, Iterable

from segkit.errors import UsageError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WORDS = {"true": True, "false": False, "none": None, "null": None}


def parse_value(text: str) -> Any:
    """``"16"`` -> 16, ``"0.3"`` -> 0.3, ``"true"`` -> True, ``"[1,2]"`` -> [1, 2], else the string."""
    stripped = text.strip()
    if stripped.lower() in _WORDS:
        return _WORDS[stripped.lower()]
    try:
        value = ast.literal_eval(stripped)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return stripped
    if isinstance(value, (int, float, str, list, tuple, bool)) or value is None:
        return list(value) if isinstance(value, tuple) else value
    return stripped


def parse_options(pairs: Iterable[str], option_name: str) -> dict[str, Any]:
    """Parse repeated ``KEY=VALUE`` strings given to ``option_name``; malformed ones are usage errors."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        key = key.strip()
        if not separator or not _KEY.match(key):
            raise UsageError(
                f"{option_name} expects KEY=VALUE with KEY a Python identifier, got {pair!r} "
                f"(example: {option_name} base_channels=16)"
            )
        if key in options:
            raise UsageError(f"{option_name} sets {key!r} twice")
        options[key] = parse_value(value)
    return options
