"""Declaring and checking a component's keyword options: the one way every model, loss, dataset and
callback factory does it, built-in or not.

A factory declares its options once, as a mapping of names to ``Option(default, parse, allowed, help)``,
and checks what it was given with ``parse_component_options``::

    from segkit.config.component_options import Option, choice, parse_component_options, positive_int

    OPTIONS = {
        "base_channels": Option(32, positive_int, help="width of the first encoder level"),
        "pad_mode": Option("reflect", choice("reflect", "zeros")),
    }

    def build_my_unet(**options):
        parsed = parse_component_options("model", "my_unet", options, OPTIONS)
        return MyUNet(**parsed)

    @segkit.hookimpl
    def register_models(register):
        register("my_unet", build_my_unet, description="...", options=OPTIONS)

An unknown option or a bad value is a ``segkit.errors.UsageError`` naming the component and the
option, which the CLI prints as one line::

    loss 'bce_dice' has no option 'alhpa' (did you mean 'alpha'?); its options are: alpha, ...
    loss 'dice': option 'smooth' must be a number > 0, got -1

A parser is any callable taking the given value and returning the parsed one, raising ``ValueError``
or ``TypeError`` to refuse it. Those here carry an ``allowed`` text that ``Option`` uses when it is
given none. Values arrive from Python calls, config files and ``--model-option KEY=VALUE`` (already
typed by ``segkit.config.options.parse_value``), so numbers also accept their decimal strings.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segkit.errors import UsageError

__all__ = [
    "Option",
    "Parser",
    "parse_component_options",
    "number",
    "positive",
    "non_negative",
    "fraction",
    "boolean",
    "integer",
    "int_at_least",
    "positive_int",
    "non_negative_int",
    "text",
    "path",
    "choice",
    "optional",
    "checked",
]


@dataclass(frozen=True)
class Parser:
    """A named parser: ``parser(value)`` returns the parsed value; ``allowed`` says what it accepts."""

    function: Callable[[Any], Any]
    allowed: str

    def __call__(self, value: Any) -> Any:
        return self.function(value)

    def __repr__(self) -> str:
        return f"<parser: {self.allowed}>"


@dataclass(frozen=True)
class Option:
    """One keyword option of a component factory.

    ``default`` is used when the option is not given (and parsed like a given value); ``parse``
    checks and converts a value; ``allowed`` describes the accepted values for error messages (by
    default the parser's own ``allowed``); ``help`` says what the option does.
    """

    default: Any
    parse: Callable[[Any], Any]
    allowed: str = ""
    help: str = ""

    def __post_init__(self) -> None:
        if not self.allowed:
            allowed = getattr(self.parse, "allowed", "")
            if not allowed:
                raise TypeError(
                    f"Option({self.default!r}, {self.parse!r}) needs allowed='...' describing the values "
                    "its parser accepts"
                )
            object.__setattr__(self, "allowed", allowed)


def parse_component_options(
    kind: str, name: str, given: Mapping[str, Any], spec: Mapping[str, Option]
) -> dict[str, Any]:
    """Every option of ``spec``, in its order, parsed from ``given`` or from its default.

    ``kind`` and ``name`` (``"loss"``, ``"bce_dice"``) name the component in messages. Raises
    ``UsageError`` for an option ``spec`` does not declare (suggesting the nearest name) or a value
    its parser refuses.
    """
    unknown = sorted(set(given) - set(spec), key=str)
    if unknown:
        raise UsageError(unknown_options_message(kind, name, unknown, spec))
    parsed = {}
    for option_name, option in spec.items():
        value = given.get(option_name, option.default)
        try:
            parsed[option_name] = option.parse(value)
        except (TypeError, ValueError, ArithmeticError):
            raise UsageError(
                f"{kind} {name!r}: option {option_name!r} must be {option.allowed}, got {value!r}"
            ) from None
    return parsed


def unknown_options_message(kind: str, name: str, unknown: list[Any], spec: Mapping[str, Option]) -> str:
    known = sorted(spec)
    described = []
    for option_name in unknown:
        nearest = difflib.get_close_matches(str(option_name), known, n=1, cutoff=0.5)
        hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
        described.append(f"{option_name!r}{hint}")
    noun = "option" if len(unknown) == 1 else "options"
    listing = f"its options are: {', '.join(known)}" if known else "it takes no options"
    return f"{kind} {name!r} has no {noun} {', '.join(described)}; {listing}"


# -- parsers ---------------------------------------------------------------------------------------


def _number(value: Any) -> float:
    # bool is an int subclass: ``smooth=True`` is a mistake, not 1.0.
    if isinstance(value, bool):
        raise ValueError("a bool is not a number")
    if isinstance(value, str):
        value = float(value.strip())
    if not isinstance(value, numbers.Real):
        raise TypeError(f"not a number: {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


def _checked(parse: Callable[[Any], Any], accept: Callable[[Any], bool]) -> Callable[[Any], Any]:
    def parse_and_check(value: Any) -> Any:
        parsed = parse(value)
        if not accept(parsed):
            raise ValueError(f"out of range: {value!r}")
        return parsed

    return parse_and_check


def checked(parser: Callable[[Any], Any], accept: Callable[[Any], bool], allowed: str) -> Parser:
    """``parser`` that also requires ``accept(parsed)``, e.g. ``checked(number, lambda v: v <= 10,
    "a number up to 10")``."""
    return Parser(_checked(parser, accept), allowed)


number = Parser(_number, "a finite number")
positive = Parser(_checked(_number, lambda value: value > 0), "a number > 0")
non_negative = Parser(_checked(_number, lambda value: value >= 0), "a number >= 0")
fraction = Parser(_checked(_number, lambda value: 0 <= value <= 1), "a number in [0, 1]")

_TRUE, _FALSE = "true", "false"


def _boolean(value: Any) -> bool:
    # Config files and ``--loss-option per_image=true`` give bools; Python callers may give strings.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (_TRUE, _FALSE):
        return value.strip().lower() == _TRUE
    raise ValueError(f"not true or false: {value!r}")


boolean = Parser(_boolean, "true or false")


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"not an integer: {value!r}")
    return int(value)


integer = Parser(_integer, "an integer")


def int_at_least(minimum: int, allowed: str | None = None) -> Parser:
    """Integers ``>= minimum`` (bools refused; numpy integers accepted and returned as ``int``)."""
    return Parser(_checked(_integer, lambda value: value >= minimum), allowed or f"an integer >= {minimum}")


positive_int = int_at_least(1, "a positive integer")
non_negative_int = int_at_least(0, "a non-negative integer")


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a non-empty string: {value!r}")
    return value


text = Parser(_text, "a non-empty string")


def _path(value: Any) -> Path:
    if isinstance(value, str) and not value.strip():
        raise ValueError("an empty path")
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"not a path: {value!r}")
    return Path(value)


path = Parser(_path, "a path")


def choice(*names: Any) -> Parser:
    """One of ``names``, compared with ``==`` (``choice("reflect", "zeros")``)."""

    def parse(value: Any) -> Any:
        for name in names:
            if type(value) is type(name) and value == name:
                return name
        raise ValueError(f"not one of {names!r}: {value!r}")

    return Parser(parse, "one of " + ", ".join(str(name) for name in names))


_NONE_WORDS = ("none", "")


def optional(parser: Callable[[Any], Any]) -> Parser:
    """``None`` (also given as ``"none"`` or ``""``), or what ``parser`` accepts."""

    def parse(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
            return None
        return parser(value)

    inner = getattr(parser, "allowed", "") or "a value"
    return Parser(parse, f"{inner}, or none")
