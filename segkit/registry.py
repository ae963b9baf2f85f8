"""Registries of components collected from plugins, and the host's policy over them.

Duplicate names are an error naming both distributions; an unknown name lists what exists and
suggests the nearest.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable

from segkit.errors import DuplicateComponentError, UnknownComponentError

KINDS = ("model", "loss", "dataset", "callback", "augmentation", "recipe", "planner")


@dataclass(frozen=True)
class Component:
    """One registered thing: what it is called, what builds it, and who provided it."""

    kind: str
    name: str
    factory: Any
    description: str
    plugin: str
    distribution: str
    version: str
    metadata: dict = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}".strip()


class Registry:
    """Components of one kind, by name. ``excluded``: plugins the environment switches left out, as
    ``(entry point, distribution, "VARIABLE=value")``, named when a name is unknown."""

    def __init__(self, kind: str, excluded: list[tuple[str, str, str]] | None = None) -> None:
        self.kind = kind
        self._components: dict[str, Component] = {}
        self.excluded = list(excluded or [])

    def add(self, component: Component) -> None:
        existing = self._components.get(component.name)
        if existing is not None:
            raise DuplicateComponentError(
                f"{self.kind} {component.name!r} is registered twice: by "
                f"{existing.distribution} (plugin {existing.plugin!r}) and by "
                f"{component.distribution} (plugin {component.plugin!r}). "
                f"Uninstall one of them, or exclude one with SEGKIT_DISABLE_PLUGINS."
            )
        self._components[component.name] = component

    def get(self, name: str) -> Component:
        if not isinstance(name, str):
            raise UnknownComponentError(f"{self.kind} (--{self.kind}) must be a name, got {name!r}")
        try:
            return self._components[name]
        except KeyError:
            message = unknown_name_message(self.kind, name, self.names())
            raise UnknownComponentError(message + excluded_note(name, self.excluded)) from None

    def names(self) -> list[str]:
        return sorted(self._components)

    def __contains__(self, name: object) -> bool:
        return name in self._components

    def __iter__(self):
        return iter(self._components[name] for name in self.names())

    def __len__(self) -> int:
        return len(self._components)


def unknown_name_message(kind: str, name: str, available: list[str]) -> str:
    message = f"unknown {kind} {name!r}."
    nearest = difflib.get_close_matches(name, available, n=1, cutoff=0.5)
    if nearest:
        message += f" Did you mean {nearest[0]!r}?"
    message += f" Available {kind}s: {', '.join(available) if available else '(none registered)'}."
    return message


def excluded_note(name: str, excluded: list[tuple[str, str, str]]) -> str:
    """Why a name may be unknown: the plugins ``SEGKIT_PLUGINS``/``SEGKIT_DISABLE_PLUGINS`` left out
    (the one whose entry point is called ``name`` first)."""
    if not excluded:
        return ""
    named = [entry for entry in excluded if entry[0] == name]
    if named:
        entry_point, distribution, switch = named[0]
        return f" Plugin {entry_point!r} of {distribution} is not loaded because {switch}."
    by_switch: dict[str, list[str]] = {}
    for entry_point, distribution, switch in excluded:
        by_switch.setdefault(switch, []).append(f"{entry_point} ({distribution})")
    listed = "; ".join(f"{switch} leaves out {', '.join(plugins)}" for switch, plugins in by_switch.items())
    return f" Not loaded, and possibly providing it: {listed}."


def make_register(registry: Registry, plugin: str, distribution: str, version: str) -> Callable[..., None]:
    """The ``register`` callable handed to one plugin's hook implementation."""

    def register(name: str, factory: Any, description: str | None = None, **metadata: Any) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"plugin {plugin!r} registered a {registry.kind} with an invalid name {name!r}")
        if description is None:
            doc = getattr(factory, "__doc__", None) or ""
            description = doc.strip().splitlines()[0] if doc.strip() else ""
        registry.add(
            Component(
                kind=registry.kind,
                name=name,
                factory=factory,
                description=description,
                plugin=plugin,
                distribution=distribution,
                version=version,
                metadata=metadata,
            )
        )

    return register
