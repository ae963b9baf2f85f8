"""The house's layers, checked: import-linter's contracts (``.importlinter``: cli on top; the engine,
the planner and reporting; inference; data, models, losses, tasks and config; metrics; the plugin host,
registry, errors and files at the bottom), and what import-linter cannot express, read from the source
with ``ast``: no core module imports the package root, no private name crosses a module, and plugins
(built-in and the two in-tree distributions) import only the public modules the README lists."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "segkit"
PLUGIN_SOURCES = [
    REPO / "plugins" / "segkit_builtin",
    REPO / "plugins" / "segkit-smp" / "src",
    REPO / "plugins" / "segkit-attention-unet" / "src",
]

#: Where the package root's public API (``segkit.create_model``, ``segkit.hookimpl``...) may be used:
#: the root itself, ``python -m segkit`` and the command line. Core modules import their siblings.
MAY_IMPORT_ROOT = {"segkit/__init__.py", "segkit/__main__.py"}

#: The modules a plugin may import (the README's "Writing a plugin" lists them, with what each holds).
PUBLIC_MODULES = {
    "segkit",  # hookimpl, create_*, get_component, list_components, load_model, __version__
    "segkit.errors",
    "segkit.component_options",
    "segkit.lazy",
    "segkit.models",
    "segkit.blocks",
    "segkit.losses",
    "segkit.datasets",
    "segkit.data.transforms",
    "segkit.download",
    "segkit.callbacks",
    "segkit.atomic_files",
    "segkit.testing",
    # for the deeper kinds: planners, recipes, trackers
    "segkit.planning",
    "segkit.planning.auto",
    "segkit.config.resolve",
    "segkit.config.settings",
    "segkit.config.run_folder",
    "segkit.reporting.plotting",
    "segkit.reporting.report",
    "segkit.inference.predictor",
    "segkit.data.splits",
}


def python_files(*roots: Path) -> list[Path]:
    return sorted(path for root in roots for path in root.rglob("*.py") if "tests" not in path.parts)


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import in ``path``, at any depth (inside functions too);
    ``import a.b`` gives ``("a.b", [])``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def test_the_import_contracts_hold():
    """``lint-imports`` over segkit and segkit_builtin, as CI and a developer run it."""
    linter = Path(sys.executable).with_name("lint-imports")
    command = [str(linter)] if linter.exists() else ["lint-imports"]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_COLOR": "1"}
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def root_imports(path: Path) -> list[str]:
    found = []
    for line, module, names in imports(path):
        if module == "segkit":
            statement = f"from segkit import {', '.join(names)}" if names else "import segkit"
            found.append(f"{path.relative_to(REPO)}:{line}: {statement}")
    return found


def test_no_core_module_imports_the_package_root():
    offenders = [
        finding
        for path in python_files(CORE)
        if str(path.relative_to(REPO)) not in MAY_IMPORT_ROOT and not path.is_relative_to(CORE / "cli")
        for finding in root_imports(path)
    ]
    assert offenders == [], "import the module itself (from segkit.components import ...):\n" + "\n".join(
        offenders
    )


def test_no_private_name_is_imported_across_modules():
    offenders = [
        f"{path.relative_to(REPO)}:{line}: from {module} import {name}"
        for path in python_files(CORE, *PLUGIN_SOURCES)
        for line, module, names in imports(path)
        if module.split(".")[0] in {"segkit", "segkit_builtin", "segkit_smp", "segkit_attention_unet"}
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert offenders == [], "\n".join(offenders)


def test_plugins_import_only_segkits_public_modules():
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in python_files(*PLUGIN_SOURCES)
        for line, module, _ in imports(path)
        if module.split(".")[0] == "segkit" and module not in PUBLIC_MODULES
    ]
    assert offenders == [], "\n".join(offenders)


@pytest.mark.parametrize(
    "source, finding",
    [
        ("import segkit\n", "import segkit"),
        ("def f():\n    from segkit import data_cache\n", "from segkit import data_cache"),
    ],
)
def test_the_root_check_finds_imports_at_any_depth(tmp_path, monkeypatch, source, finding):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    path = tmp_path / "module.py"
    path.write_text(source)
    assert [text.split(": ", 1)[1] for text in root_imports(path)] == [finding]


def test_the_public_modules_exist():
    """A name in the list that no longer exists would let the README promise a module that is gone."""
    import importlib

    for name in sorted(PUBLIC_MODULES):
        importlib.import_module(name)


def test_every_room_is_a_package_that_installs():
    """A folder of segkit/ left out of pyproject.toml's ``packages`` works in an editable install and is
    missing from a wheel: every folder with an ``__init__.py`` must be listed."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(init.parent.relative_to(REPO).parts) for init in CORE.rglob("__init__.py")}
    assert folders - listed == set(), "add to [tool.setuptools] packages in pyproject.toml"


@pytest.mark.parametrize(
    "old, new",
    [
        ("segkit.blocks", "segkit.models.blocks"),
        ("segkit.component_options", "segkit.config.component_options"),
        ("segkit.datasets", "segkit.data.datasets"),
        ("segkit.download", "segkit.data.download"),
    ],
)
def test_the_documented_plugin_paths_that_moved_are_the_moved_modules(old, new):
    """Not copies: a plugin patching or subclassing through the old path reaches the one module."""
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)
