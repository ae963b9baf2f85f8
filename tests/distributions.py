"""Build tiny plugin distributions on the fly: a module plus a ``.dist-info`` with entry points.

Putting the folder on PYTHONPATH makes ``importlib.metadata`` see an installed distribution, exactly
as pip would leave it, without running pip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fixtures import on_the_cpu


def make_distribution(
    root: Path, dist_name: str, module_name: str, source: str, version: str = "0.1"
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module_name}.py").write_text(source)
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[segkit]\n{module_name} = {module_name}\n")
    return root


def run_segkit(
    args: list[str],
    extra_path: Path | None = None,
    cwd: Path | None = None,
    timeout: int = 600,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    environment = dict(os.environ)
    environment.pop("SEGKIT_PLUGINS", None)
    environment.pop("SEGKIT_DISABLE_PLUGINS", None)
    if extra_path is not None:
        environment["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(extra_path), environment.get("PYTHONPATH")])
        )
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "segkit", *on_the_cpu(list(args))],  # evaluate and predict: the CPU
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=timeout,
    )
