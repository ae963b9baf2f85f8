"""The plugin host: loads plugins from the ``segkit`` entry-point group and builds the registries.

Built-in plugins are found exactly like third-party ones. A plugin that fails to import, or raises
inside a hook, is reported once on stderr with its distribution and skipped; the rest keep working.

Environment switches, for reproducible runs:

- ``SEGKIT_PLUGINS``: comma-separated entry-point or distribution names; only those load.
  Set it to an empty string to load no plugin at all.
- ``SEGKIT_DISABLE_PLUGINS``: comma-separated entry-point or distribution names that never load.

An entry in either that matches no installed plugin is a warning on stderr (a typo would otherwise
quietly load everything, or nothing); a name a plugin left out by them might have registered is
unknown with the switch named as the likely reason.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

import pluggy

import segkit.hookspecs as hookspecs
from segkit.errors import DuplicateComponentError
from segkit.registry import KINDS, Registry, make_register

ENTRY_POINT_GROUP = "segkit"
ALLOW_ENV = "SEGKIT_PLUGINS"
DENY_ENV = "SEGKIT_DISABLE_PLUGINS"

HOOK_FOR_KIND = {
    "model": "register_models",
    "loss": "register_losses",
    "dataset": "register_datasets",
    "callback": "register_callbacks",
    "augmentation": "register_augmentations",
    "recipe": "register_recipes",
    "planner": "register_planners",
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str
    stage: str
    error: str


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {_normalize(part) for part in value.split(",") if part.strip()}


class PluginHost:
    """Owns the pluggy manager, what each plugin is, and the registries built from them."""

    def __init__(self, load_entry_points: bool = True, stderr: Any = None) -> None:
        self.pm = pluggy.PluginManager("segkit")
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        #: Plugins the environment switches left out: (entry point, distribution, "VARIABLE=value").
        self.excluded: list[tuple[str, str, str]] = []
        self._stderr = stderr
        self._registries: dict[str, Registry] | None = None
        if load_entry_points:
            self.load_entry_points()

    # -- loading -----------------------------------------------------------------------------
    def _report(self, failure: PluginFailure) -> None:
        self.failures.append(failure)
        stream = self._stderr or sys.stderr
        print(
            f"segkit: warning: plugin {failure.plugin!r} from distribution {failure.distribution} "
            f"failed {failure.stage} and was skipped: {failure.error}",
            file=stream,
        )

    def _warn(self, text: str) -> None:
        print(f"segkit: warning: {text}", file=self._stderr or sys.stderr)

    def load_entry_points(self) -> None:
        allow = _env_names(ALLOW_ENV)
        deny = _env_names(DENY_ENV) or set()
        entry_points = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        seen: set[str] = set()
        installed: set[str] = set()
        for entry_point in entry_points:
            dist = getattr(entry_point, "dist", None)
            dist_name = dist.name if dist is not None else "unknown"
            version = dist.version if dist is not None else ""
            keys = {_normalize(entry_point.name), _normalize(dist_name)}
            seen |= keys
            installed |= {entry_point.name, dist_name}
            if (allow is not None and not keys & allow) or keys & deny:
                variable = DENY_ENV if keys & deny else ALLOW_ENV
                self.excluded.append((entry_point.name, dist_name, f"{variable}={os.environ[variable]}"))
                continue
            if entry_point.name in self.info:
                continue  # the same distribution seen twice on sys.path
            label = f"{dist_name} {version}".strip()
            try:
                module = entry_point.load()
            except Exception as error:  # noqa: BLE001 - any import failure must not stop segkit
                self._report(PluginFailure(entry_point.name, label, "to import", _describe(error)))
                continue
            self.register_plugin(module, entry_point.name, dist_name, version)
        for variable, names in ((ALLOW_ENV, allow or set()), (DENY_ENV, deny)):
            for name in sorted(names - seen):
                self._warn(
                    f"{variable} names {name!r}, which matches no installed plugin (entry points and "
                    f"distributions of group {ENTRY_POINT_GROUP!r}: {', '.join(sorted(installed)) or 'none'})"
                )

    def register_plugin(self, plugin: Any, name: str, distribution: str = "local", version: str = "") -> None:
        """Register a plugin object (a module or any object with ``@hookimpl`` methods)."""
        label = f"{distribution} {version}".strip()
        try:
            self.pm.register(plugin, name=name)
        except Exception as error:  # noqa: BLE001 - e.g. a hookimpl with wrong arguments
            self._report(PluginFailure(name, label, "validation", _describe(error)))
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            self.pm.unregister(name=name)
            self._report(PluginFailure(name, label, "validation", _describe(error)))
            return
        self.info[name] = PluginInfo(name, distribution, version)
        self._registries = None

    def unregister_plugin(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.info.pop(name, None)
        self._registries = None

    # -- registries --------------------------------------------------------------------------
    def call_each(self, hook_name: str, call: Callable[[Callable, PluginInfo], None]) -> None:
        """Call one hook's implementations one by one, isolating failures per plugin."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.info.get(impl.plugin_name, PluginInfo(impl.plugin_name, "local", ""))
            try:
                call(impl.function, info)
            except DuplicateComponentError:  # host policy, not a plugin fault: the user must act
                raise
            except Exception as error:  # noqa: BLE001 - a broken hook must not stop the others
                label = f"{info.distribution} {info.version}".strip()
                self._report(PluginFailure(info.name, label, f"in {hook_name}", _describe(error)))

    def registry(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise ValueError(f"unknown component kind {kind!r}; kinds are {', '.join(KINDS)}")
        if self._registries is None:
            registries = {}
            for each_kind in KINDS:
                registry = Registry(each_kind, excluded=self.excluded)

                def call(function: Callable, info: PluginInfo, registry: Registry = registry) -> None:
                    function(register=make_register(registry, info.name, info.distribution, info.version))

                self.call_each(HOOK_FOR_KIND[each_kind], call)
                registries[each_kind] = registry
            self._registries = registries
        return self._registries[kind]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, created on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
    return _host


def host_loaded() -> bool:
    """Whether this process has loaded its plugins already (asking costs nothing)."""
    return _host is not None


def reset_host() -> None:
    """Forget the process-wide host (tests use this after changing the environment switches)."""
    global _host
    _host = None
