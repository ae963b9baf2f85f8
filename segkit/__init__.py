"""segkit: a plugin-based binary semantic segmentation toolkit on PyTorch."""

from importlib import metadata as _metadata

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

try:
    __version__ = _metadata.version("segkit")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

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
