"""segkit: a plugin-based binary semantic segmentation toolkit on PyTorch."""

from segkit.api import (
    create_callback,
    create_dataset,
    create_loss,
    create_model,
    get_component,
    list_components,
    load_model,
)
from segkit.hookspecs import hookimpl
from segkit.version import __version__

__all__ = [
    "__version__",
    "hookimpl",
    "create_model",
    "create_loss",
    "create_dataset",
    "create_callback",
    "get_component",
    "list_components",
    "load_model",
]
