"""The ``register_commands`` hook: a plugin adds a ``segkit`` subcommand, listed in ``--help`` and run
like a core one; a plugin whose hook fails does not take the core commands down with it."""

from __future__ import annotations

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
