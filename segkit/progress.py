"""Progress bars: one rule for every command, and for notebooks.

A bar is drawn when it will be seen, and only then:

- ``quiet`` (``--quiet``, ``-q``): never;
- in a Jupyter notebook (an IPython kernel): always, as a widget where ipywidgets is installed, else
  as text in the cell's output (a kernel's stderr is not a terminal, so tqdm's own ``disable=None``
  would hide it);
- on a terminal (stderr is a TTY): always;
- stderr redirected to a file or a pipe (``segkit run ... 2> train.log``, CI): never, so logs hold
  lines, not hundreds of redrawn bars. Messages still go there (``tqdm.write``).

Every segkit bar is made by ``progress``; nothing else imports tqdm.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython's ``IPKernelApp``), as tqdm.autonotebook
    tells; a terminal IPython is not one."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def stderr_is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty is not None and isatty())
    except (ValueError, OSError):  # a closed or detached stream
        return False


def show_progress(quiet: bool = False) -> bool:
    """The rule above: whether a bar would be drawn now."""
    return not quiet and (in_notebook() or stderr_is_terminal())


def progress(iterable: Any = None, *, quiet: bool = False, **options: Any) -> Any:
    """A tqdm bar over ``iterable`` (or ``total=``) drawn by the rule above; ``options`` go to tqdm
    (``desc``, ``unit``, ``leave``, ...). A bar that is not drawn still iterates, and its
    ``write`` still prints."""
    show = show_progress(quiet)
    if show and in_notebook() and importlib.util.find_spec("ipywidgets") is None:
        from tqdm.std import tqdm  # tqdm.notebook raises without ipywidgets: text in the cell instead
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, disable=not show, **options)


def write(message: str) -> None:
    """Print ``message`` on stderr on a line of its own, below any bar being drawn."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)
