"""segkit: a plugin-based semantic segmentation toolkit (binary, multi-class and multi-label) on PyTorch.

From Python: ``segkit.train(...)`` trains as ``segkit run`` does and returns a ``segkit.Run``;
``segkit.Run("runs/...")`` opens a run folder; ``segkit.load_model(...)`` loads a trained model for
inference. See ``segkit.api``.
"""

from segkit.api import (
    EvaluationResult,
    ReportPage,
    Run,
    create_callback,
    create_dataset,
    create_loss,
    create_model,
    get_component,
    list_components,
    load_model,
    train,
)
from segkit.hookspecs import hookimpl
from segkit.version import __version__

__all__ = [
    "__version__",
    "hookimpl",
    "train",
    "Run",
    "EvaluationResult",
    "ReportPage",
    "create_model",
    "create_loss",
    "create_dataset",
    "create_callback",
    "get_component",
    "list_components",
    "load_model",
]
