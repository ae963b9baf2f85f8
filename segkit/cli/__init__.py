"""The ``segkit`` command line. Each subcommand lives in its own module of this package.

segkit's own errors (``SegkitError``) print as one line on stderr with exit code 1, or 2 for usage
errors; they never show a traceback. Set ``SEGKIT_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings

import click

from segkit import __version__
from segkit.errors import SegkitError

# Core subcommands, imported lazily so `segkit --help` stays fast.
CORE_COMMANDS = {
    "run": ("segkit.cli.run_cmd", "run"),
    "plan": ("segkit.cli.plan_cmd", "plan"),
    "evaluate": ("segkit.cli.evaluate_cmd", "evaluate"),
    "predict": ("segkit.cli.predict_cmd", "predict"),
    "plot": ("segkit.cli.plot_cmd", "plot"),
    "report": ("segkit.cli.report_cmd", "report"),
    "export": ("segkit.cli.export_cmd", "export"),
    "plugins": ("segkit.cli.plugins_cmd", "plugins"),
    "models": ("segkit.cli.models_cmd", "models"),
    "data": ("segkit.cli.data_cmd", "data"),
}


class SegkitGroup(click.Group):
    """A group that lists core commands lazily and adds plugin commands from ``register_commands``."""

    _plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if SegkitGroup._plugin_commands_loaded:
            return
        SegkitGroup._plugin_commands_loaded = True
        from segkit.plugins import get_host

        get_host().call_each("register_commands", lambda function, info: function(cli=self))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``segkit --help``. Plugin commands come from the list remembered when
        they were last loaded (``segkit.cli.command_cache``) unless this process has loaded the
        plugins already: importing them all (and torch with them) takes seconds."""
        from segkit.cli import command_cache
        from segkit.plugins import host_loaded

        remembered = None if host_loaded() else command_cache.read_plugin_commands()
        if remembered is None:
            super().format_commands(ctx, formatter)
            command_cache.write_plugin_commands(self._plugin_command_help(formatter.width))
            return
        limit = formatter.width - 6 - max(map(len, [*CORE_COMMANDS, *remembered]))
        rows = [(name, _core_command(name).get_short_help_str(limit)) for name in CORE_COMMANDS]
        rows += list(remembered.items())
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))

    def _plugin_command_help(self, width: int) -> dict[str, str]:
        return {
            name: command.get_short_help_str(max(width - 6 - len(name), 20))
            for name, command in self.commands.items()
            if name not in CORE_COMMANDS and not command.hidden
        }

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(CORE_COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in CORE_COMMANDS:
            return _core_command(name)
        self._load_plugin_commands()
        return self.commands.get(name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """An unknown command is a usage error suggesting the nearest one (``segkit rnu``: run)."""
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            commands = self.list_commands(ctx)
            nearest = difflib.get_close_matches(name, commands, n=1, cutoff=0.5)
            hint = f" Did you mean {nearest[0]!r}?" if nearest else ""
            ctx.fail(f"No such command {name!r}.{hint} Commands: {', '.join(commands)}.")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)  # the shell's convention for SIGINT
        except SegkitError as error:
            if os.environ.get("SEGKIT_DEBUG"):
                raise
            click.echo(f"Error: {_one_line(error)}", err=True)
            ctx.exit(error.exit_code)


def _core_command(name: str) -> click.Command:
    module_name, attribute = CORE_COMMANDS[name]
    return getattr(importlib.import_module(module_name), attribute)


def _one_line(error: SegkitError) -> str:
    """The message itself: an error raised in a DataLoader worker arrives wrapped with the worker's
    traceback, whose last line is the original message."""
    text = str(error)
    if text.startswith("Caught ") and "Traceback" in text:
        last = text.strip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


@click.group(
    cls=SegkitGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, "--version", "-V", prog_name="segkit")
def cli() -> None:
    """segkit: semantic segmentation (binary, multi-class, multi-label) with plugins.

    Train with `segkit run`, list what is installed with `segkit plugins`. Every command has its own
    --help. Models, losses, datasets and callbacks come from plugins (entry-point group `segkit`);
    SEGKIT_PLUGINS / SEGKIT_DISABLE_PLUGINS choose which load.
    """


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for users (skipped files, recorder trouble) as one plain line on stderr."""
    click.echo(f"Warning: {message}", err=True)


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _show_warning
    cli.main(args=argv, prog_name="segkit")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
