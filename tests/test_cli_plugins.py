"""``segkit plugins`` and how the CLI meets installed, broken and duplicate plugin distributions."""

from __future__ import annotations

import json
import subprocess
import sys

from distributions import make_distribution, run_segkit
from fixtures import run_cli

from segkit.cli import cli

BROKEN = "raise ZeroDivisionError('broken on purpose')\n"
DUPLICATE = """
import segkit, torch

@segkit.hookimpl
def register_models(register):
    register("unet", lambda in_channels=3, out_channels=1: torch.nn.Conv2d(in_channels, out_channels, 1))
"""


def test_plugins_json_lists_builtins_with_distribution():
    result = run_cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    by_name = {(row["kind"], row["name"]): row for row in rows}
    for kind, name in [
        ("model", "unet"),
        ("model", "resnet34_unet"),
        ("loss", "bce_dice"),
        ("loss", "bce_tversky"),
        ("dataset", "synthetic"),
        ("dataset", "oxford_pet"),
        ("callback", "csv"),
        ("callback", "excel"),
        ("recipe", "seed"),
    ]:
        assert (kind, name) in by_name, f"{kind} {name} not listed"
        assert by_name[(kind, name)]["distribution"] == "segkit"
        assert by_name[(kind, name)]["description"]


def test_plugins_table_has_a_header_and_a_row_per_component():
    result = run_cli("plugins", "--kind", "loss")
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["KIND", "NAME", "DISTRIBUTION"]
    assert any(line.split()[:2] == ["loss", "bce_dice"] for line in lines[1:])
    assert all(line.startswith("loss") for line in lines[1:])


def test_version_and_help():
    assert run_cli("--version").output.startswith("segkit, version ")
    help_text = run_cli("--help").output
    assert "run" in help_text and "plugins" in help_text


def test_every_subcommand_explains_every_option():
    for name in cli.list_commands(None):
        command = cli.get_command(None, name)
        assert command.help, f"segkit {name} has no help text"
        for parameter in getattr(command, "params", []):
            if parameter.param_type_name == "option" and parameter.name not in ("help",):
                assert parameter.help, f"segkit {name} {parameter.opts[0]} has no help"
        assert run_cli(name, "--help").exit_code == 0


def test_a_broken_distribution_is_reported_once_and_stops_nothing(tmp_path):
    path = make_distribution(tmp_path / "site", "broken-plugin", "broken_plugin", BROKEN)
    result = run_segkit(["plugins", "--json"], extra_path=path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("broken on purpose") == 1
    assert "broken-plugin 0.1" in result.stderr and "ZeroDivisionError" in result.stderr
    assert "unet" in {row["name"] for row in json.loads(result.stdout)}


def test_a_duplicate_model_name_is_an_error_naming_both_distributions(tmp_path):
    path = make_distribution(tmp_path / "site", "copycat-models", "copycat", DUPLICATE)
    result = run_segkit(["plugins"], extra_path=path)
    assert result.returncode == 1
    assert "copycat-models" in result.stderr and "segkit" in result.stderr and "'unet'" in result.stderr
    assert "Traceback" not in result.stderr
    # The switch excludes the copy and everything works again.
    result = run_segkit(["plugins"], extra_path=path, env={"SEGKIT_DISABLE_PLUGINS": "copycat-models"})
    assert result.returncode == 0


def test_unknown_model_is_a_usage_error_with_a_suggestion(tmp_path):
    result = run_cli("run", "--model", "unett", "--out", tmp_path)
    assert result.exit_code == 2
    assert "Did you mean 'unet'?" in result.output and "resnet34_unet" in result.output


def test_an_unknown_command_suggests_the_nearest_one():
    result = run_cli("rnu")
    assert result.exit_code == 2
    assert "No such command 'rnu'. Did you mean 'run'?" in result.output


def test_plugins_options_lists_what_each_component_accepts():
    result = run_cli("plugins", "--kind", "model", "--options")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["base_channels", "=", "64"] for line in lines), result.stdout
    assert not any(line.split()[:1] == ["in_channels"] for line in lines), "set by segkit, not a user"
    rows = json.loads(run_cli("plugins", "--kind", "loss", "--options", "--json").stdout)
    bce_tversky = next(row for row in rows if row["name"] == "bce_tversky")
    assert "alpha" in {option["name"] for option in bce_tversky["options"]}


def test_help_and_plugins_do_not_import_torchvision():
    """torchvision takes seconds to import; --help and `segkit plugins` need none of it."""
    code = (
        "import sys\n"
        "from segkit.cli import cli\n"
        "for args in (['--help'], ['plugins']):\n"
        "    try:\n"
        "        cli.main(args, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('IMPORTED', sorted(name for name in sys.modules if name.startswith('torchvision')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "IMPORTED []" in result.stdout, result.stdout[-500:]
