"""The ``register_commands`` hook: a plugin adds a ``segkit`` subcommand, listed in ``--help`` and run
like a core one; a plugin whose hook fails does not take the core commands down with it."""

from __future__ import annotations

import json

import click
import pytest
from fixtures import run_cli

import segkit
from segkit.cli import SegkitGroup, cli


class GreetingPlugin:
    @segkit.hookimpl
    def register_commands(self, cli):
        @cli.command("greet")
        @click.argument("name")
        @click.option("--shout", is_flag=True)
        def greet(name, shout):
            """Say hello (a plugin's command)."""
            text = f"hello {name}"
            click.echo(text.upper() if shout else text)


class BrokenCommandsPlugin:
    @segkit.hookimpl
    def register_commands(self, cli):
        raise RuntimeError("this plugin's commands are broken")


@pytest.fixture
def plugin_commands(fresh_host, monkeypatch):
    """Plugins registered on a fresh host; the group loads plugin commands again, and forgets them after."""
    host = fresh_host()
    monkeypatch.setattr(SegkitGroup, "_plugin_commands_loaded", False)
    before = dict(cli.commands)
    yield host
    cli.commands.clear()
    cli.commands.update(before)


def test_a_plugin_command_is_listed_and_runs(plugin_commands):
    plugin_commands.register_plugin(GreetingPlugin(), "greeting", "segkit-greeting", "1.0")
    listing = run_cli("--help")
    assert listing.exit_code == 0, listing.output
    assert "greet" in listing.output and "Say hello" in listing.output
    assert "run" in listing.output  # the core commands are still there
    result = run_cli("greet", "world", "--shout")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "HELLO WORLD"
    misuse = run_cli("greet")
    assert misuse.exit_code == 2 and "Missing argument 'NAME'" in misuse.output


def test_a_broken_register_commands_hook_leaves_the_core_commands(plugin_commands):
    plugin_commands.register_plugin(BrokenCommandsPlugin(), "broken-commands", "segkit-broken", "0.1")
    plugin_commands.register_plugin(GreetingPlugin(), "greeting", "segkit-greeting", "1.0")
    result = run_cli("greet", "you")
    assert result.exit_code == 0, result.output
    assert "hello you" in result.output
    assert "this plugin's commands are broken" in result.output  # reported, not swallowed
    assert run_cli("models", "--help").exit_code == 0


HELP_WITHOUT_TORCH = """
import sys
from segkit.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print("torch imported" if "torch" in sys.modules else "torch not imported", file=sys.stderr)
"""


def segkit_help(env: dict[str, str]):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_command_list_comes_without_importing_torch_once_remembered(tmp_path):
    """`segkit --help` loads the plugins (and torch) once, then lists their commands from the cache;
    another set of plugins (here: SEGKIT_PLUGINS) loads them again."""
    import os

    env = {**os.environ, "SEGKIT_CACHE_DIR": str(tmp_path)}
    first = segkit_help(env)
    assert first.returncode == 0 and "torch imported" in first.stderr, first.stderr
    second = segkit_help(env)
    assert second.returncode == 0 and "torch not imported" in second.stderr, second.stderr
    assert second.stdout == first.stdout and "  run " in second.stdout
    changed = segkit_help({**env, "SEGKIT_PLUGINS": "unet"})
    assert "torch imported" in changed.stderr


def test_remembered_plugin_commands_are_listed_and_a_changed_install_is_not(tmp_path, monkeypatch):
    from segkit.cli import command_cache
    from segkit.plugins import reset_host

    monkeypatch.setenv("SEGKIT_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(SegkitGroup, "_plugin_commands_loaded", False)
    reset_host()  # as in a new process: no plugin loaded yet
    command_cache.write_plugin_commands({"greet": "Say hello (a plugin's command)."})
    listing = run_cli("--help")
    assert listing.exit_code == 0 and "greet" in listing.output and "Say hello" in listing.output
    record = json.loads((tmp_path / command_cache.CACHE_FILE).read_text())
    record["plugins"][0][1] = "another install"
    (tmp_path / command_cache.CACHE_FILE).write_text(json.dumps(record))
    reset_host()
    listing = run_cli("--help")  # the plugins load again: no greet among the installed ones
    assert listing.exit_code == 0 and "greet" not in listing.output and "evaluate" in listing.output
    assert "greet" not in command_cache.read_plugin_commands()
