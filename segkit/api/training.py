"""``segkit.train``: ``segkit run`` from Python. The keyword arguments are the settings by the names
``config.json`` records (``segkit run --help`` lists them as flags: ``--learning-rate`` is
``learning_rate``), resolved in the same layers with the same checks; a bad one raises the error the
command line would print (``segkit.errors.UsageError``, a ``SegkitError``) instead of exiting."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from segkit.api.run import Run
from segkit.errors import UsageError

#: How messages name the settings given to ``segkit.train``.
TRAIN_SOURCE = "segkit.train()"


def train(
    *,
    config: str | os.PathLike | None = None,
    recipe: str | None = None,
    callbacks: Sequence[Any] = (),
    folds: int | None = None,
    fold: int | None = None,
    **settings: Any,
) -> Run:
    """Train a model as ``segkit run`` does and return its ``segkit.Run``::

        run = segkit.train(model="unet", loss="bce_dice", dataset="folder", data_path="photos",
                           recipe="auto", time_budget="10m")
        run.best_score, run.history, run.evaluate(split="valid"), run.predict("photo.jpg")

    ``config``: a TOML file or a run's ``config.json`` (``--config``); ``recipe``: a preset or a
    planner (``--recipe``); ``callbacks``: names of registered callbacks (``"early_stopping"``, as
    ``--callback`` adds them) and objects with any of ``segkit.callbacks.Callback``'s methods, which run
    after the named ones and are recorded in ``config.json`` by class name. Settings are laid over
    the config file, as flags are. Progress and the per-epoch lines print as ``segkit run`` prints
    them (``quiet=True``: the final lines only).

    ``folds=5`` (``--folds 5``): five runs, one per fold, under one parent folder, and the choices made
    on their out-of-fold predictions; the ``Run`` returned is the parent's, whose ``model``,
    ``evaluate``, ``predict``, ``report`` and ``export`` use the folds' ensemble (``Run.folds`` lists
    the fold runs, ``Run.out_of_fold`` the per-fold scores and the choices). ``fold=I``: fold I alone.
    """
    from segkit.planning import describe_settings, resolve_planned_config
    from segkit.racing import train as train_new_run
    from segkit.racing.folds import one_fold_budget, planned_folds, train_folds

    names, objects = split_callbacks(callbacks)
    if names:
        settings = {**settings, "callbacks": names}
    config_file = Path(config) if config is not None else None
    if fold is not None and folds is None:
        raise UsageError("fold=I trains one fold of folds=K: give folds too")
    settings, total_budget = one_fold_budget(settings, folds if folds != 1 else None)
    resolved = resolve_planned_config({}, config_file, recipe, python=(settings, TRAIN_SOURCE))
    folds = planned_folds(resolved, folds)
    if not resolved["quiet"]:
        for line in describe_settings(resolved):
            print(line)
    if folds is not None:
        trained = train_folds(
            resolved, folds, fold, echo=print, callbacks=objects, total_budget_s=total_budget
        )
        print(f"Run saved to {trained.parent}")
        return Run(trained.parent)
    result = train_new_run(resolved, echo=print, callbacks=objects)
    _print_result(result)
    return Run(result.run_dir)


def resume_run(run_dir: Path, settings: Mapping[str, Any], callbacks: Sequence[Any] = ()) -> None:
    """``segkit run --resume RUN`` with the settings a resume may change (None: as recorded)."""
    from segkit.config.resolve import resolve_resumed_config
    from segkit.config.settings import BY_NAME
    from segkit.engine.trainer import fit
    from segkit.planning import describe_settings

    names, objects = split_callbacks(callbacks)
    if names:
        settings = {**settings, "callbacks": names}
    unknown = [key for key in settings if key not in BY_NAME]
    if unknown:
        raise UsageError(
            f"Run.resume(): unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(BY_NAME))}"
        )
    given = {key: value for key, value in settings.items() if value is not None}
    for key, value in list(given.items()):  # as the flags' values would arrive, normalized
        normalize = BY_NAME[key].normalize
        given[key] = normalize(value) if normalize is not None else value
    resolved = resolve_resumed_config(run_dir, given)
    if not resolved["quiet"]:
        for line in describe_settings(resolved):
            print(line)
    _print_result(fit(resolved, echo=print, resume_dir=run_dir, callbacks=objects))


def _print_result(result: Any) -> None:
    if result.best_epoch:
        print(f"Best {result.metric_description}: {result.best_dice:.4f} at epoch {result.best_epoch}")
    if result.stop_reason:
        print(f"Stopped early: {result.stop_reason}")
    print(f"Run saved to {result.run_dir}")


def split_callbacks(callbacks: Sequence[Any]) -> tuple[list[str], list[Any]]:
    """``callbacks=[...]`` of a Python call: names of registered callbacks (the ``callbacks`` setting,
    ``--callback``) and callback objects (any of ``segkit.callbacks.Callback``'s methods), apart."""
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Sequence):
        raise UsageError(f"callbacks must be a list (names or callback objects), got {callbacks!r}")
    from segkit.callbacks import Callback

    events = [name for name in vars(Callback) if name.startswith("on_")]
    names, objects = [], []
    for callback in callbacks:
        if isinstance(callback, str):
            names.append(callback)
        elif isinstance(callback, type):
            raise UsageError(
                f"callbacks: {callback.__name__} is a class; give an instance, {callback.__name__}()"
            )
        elif not any(callable(getattr(callback, event, None)) for event in events):
            raise UsageError(
                f"callbacks: {type(callback).__name__} has none of the callback events ({', '.join(events)})"
            )
        else:
            objects.append(callback)
    return names, objects
