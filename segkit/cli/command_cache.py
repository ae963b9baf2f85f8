"""The commands plugins add (``register_commands``), remembered so that ``segkit --help`` lists them
without importing every plugin (which imports torch: seconds, against a tenth of one for the list).

The list is written whenever the plugins' commands are loaded, keyed by the installed plugins (the
``segkit`` entry points, their distributions and versions) and the variables choosing which load;
any change to those makes ``segkit --help`` load the plugins again and rewrite it. Running a plugin
command always loads the plugins: only the one-line help in the listing comes from here.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

from segkit.atomic_files import atomic_write_text
from segkit.data.data_cache import caching_enabled, user_cache_root
from segkit.plugins import ALLOW_ENV, DENY_ENV, ENTRY_POINT_GROUP

CACHE_FILE = "plugin-commands.json"


def installed_plugins_key() -> list[list[str]]:
    """What decides which commands the plugins add: their entry points and versions, and the
    variables that choose which plugins load."""
    key = [["env", os.environ.get(ALLOW_ENV, "<unset>"), os.environ.get(DENY_ENV, "<unset>")]]
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry_point, "dist", None)
        key.append(
            [entry_point.name, entry_point.value, dist.name if dist else "", dist.version if dist else ""]
        )
    return sorted(key)


def _path() -> Path | None:
    return user_cache_root() / CACHE_FILE if caching_enabled() else None


def read_plugin_commands() -> dict[str, str] | None:
    """``{name: one-line help}`` remembered for the plugins installed now; None when nothing fits."""
    path = _path()
    if path is None or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("plugins") != installed_plugins_key():
        return None
    commands = record.get("commands")
    if not isinstance(commands, dict) or not all(isinstance(v, str) for v in commands.values()):
        return None
    return commands


def write_plugin_commands(commands: dict[str, str]) -> None:
    """Remember the plugins' commands; a cache that cannot be written is only a slower listing."""
    path = _path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"plugins": installed_plugins_key(), "commands": commands}
        atomic_write_text(path, json.dumps(record, indent=1))
    except OSError:
        pass
