"""``segkit run --folds K``: K runs, one per fold, under one parent folder, then choices made on their
out-of-fold predictions.

The parent (``RUN/``) holds ``folds.json`` (the folds: K, the seed, every photo's fold, the strata's
spread, the settings and budget; once every fold is trained, the out-of-fold choices and the per-fold
table) and one ordinary run folder per fold (``RUN/fold-0`` ...), each with its ``fold.json``. A
fold is done when its folder holds ``finished.json``, written when its training ended (not when it
was stopped); ``--resume RUN`` continues a fold that has a ``last.pt`` and starts those that have
none, so a half-finished parent trains only what is missing. ``--fold I`` trains fold I alone (a job
array, one process per GPU); the process that finds every fold done makes the choices.

The time budget is the whole run's: after planning, ``OUT_OF_FOLD_SHARE`` of it is kept for the
out-of-fold predictions and each fold gets an equal part of the rest (the same part whether the folds
run in one process or in K).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from segkit.checkpoint_files import load_checkpoint
from segkit.config.resolve import ResolvedConfig, resolve_resumed_config
from segkit.config.run_folder import (
    FINISHED_FILE,
    FOLDS_FILE,
    create_run_dir,
    finished_folds,
    fold_folder,
    read_json_object,
    write_json,
)
from segkit.config.settings import parse_duration
from segkit.data.folds import (
    assign_folds,
    check_fold_count,
    fold_record,
    photo_strata,
    pooled_splits,
    strata_table,
)
from segkit.data.splits import build_split
from segkit.engine.trainer import RunResult, fit
from segkit.errors import UsageError
from segkit.execution.device import resolve_device
from segkit.inference.predictor import load_trained_model
from segkit.reporting.out_of_fold import collect_held_out, describe_out_of_fold, metric_words, summarize

Echo = Callable[[str], None]

#: Settings a job joining a parent (``--parent``) may give otherwise: where and how it runs.
JOIN_MAY_DIFFER = ("quiet", "device", "workers", "out", "amp", "channels_last")
#: Of a time budget, the share kept for predicting every pooled photo out of fold (twice: flip TTA
#: off and on) and choosing on them.
OUT_OF_FOLD_SHARE = 0.05


@dataclass
class FoldsResult:
    parent: Path
    results: dict[int, RunResult]
    summary: dict[str, Any] | None


def one_fold_budget(settings: dict[str, Any], folds: int | None) -> tuple[dict[str, Any], float | None]:
    """``(settings, whole budget)``: with ``--folds`` and a time budget among ``settings`` (flags or
    ``segkit.train``'s keywords), the settings with one fold's share of it, so that a planner plans one
    fold; the whole budget goes to ``train_folds``."""
    if folds is None or settings.get("time_budget") is None:
        return settings, None
    total = parse_duration(settings["time_budget"])
    return {**settings, "time_budget": total / folds if total else None}, total


def planned_folds(config: ResolvedConfig, folds: int | None) -> int | None:
    """How many folds to train: ``--folds`` (1: one run), else what the plan chose; None for one run."""
    if folds is None and config.plan is not None:
        folds = int((config.plan.facts.get("folds") or {}).get("folds", 1))
    return folds if folds is not None and folds > 1 else None


def fold_budget(budget_s: float | None, planning_s: float, folds: int) -> float | None:
    """Each fold's seconds: the budget less planning and the out-of-fold share, in K equal parts."""
    if budget_s is None:
        return None
    return max(1.0, (budget_s * (1 - OUT_OF_FOLD_SHARE) - planning_s) / folds)


def train_folds(
    config: ResolvedConfig,
    folds: int,
    only: int | None = None,
    echo: Echo = print,
    callbacks: Sequence[Any] = (),
    total_budget_s: float | None = None,
    parent: Path | None = None,
) -> FoldsResult:
    """Cut the folds, train them (or fold ``only``), then choose out of fold. ``parent``: the parent
    folder, made here or joined (another process's ``--fold``; it must hold as many folds); default a
    new one under ``--out``. ``total_budget_s``: the whole run's budget when the settings hold one
    fold's share of it (a planner planned one fold); else the settings' ``time_budget`` is the whole
    run's."""
    check_fold_count(folds)
    if only is not None and not 0 <= only < folds:
        raise UsageError(f"--fold {only} is not one of the {folds} folds (0 to {folds - 1})")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError(
            "--folds under torchrun would train every fold in every process: start one process per fold "
            "instead, each with --fold I and the same --parent DIR (and its own --device)"
        )
    values = config.values
    if parent is not None and (Path(parent) / FOLDS_FILE).is_file():
        return _join(Path(parent), config, folds, only, echo, callbacks)
    say = _say(config, echo)
    assignment, spread = cut_folds(values, folds)
    if parent is None:
        parent = create_run_dir(Path(values["out"]), values["model"], f"{values['loss']}-{folds}folds")
    else:
        parent = Path(parent)
        parent.mkdir(parents=True, exist_ok=True)
    planning_s = float(config.plan.seconds) if config.plan is not None else 0.0
    budget = total_budget_s if total_budget_s is not None else values.get("time_budget")
    record = {
        "folds": folds,
        "seed": values["seed"],
        "photos": len(assignment),
        "strata": spread,
        "time_budget_s": budget,
        "fold_time_budget_s": fold_budget(budget, planning_s, folds),
        "planning_s": planning_s,
        "config": values,
        "sources": config.sources,
        "assignment": assignment,
    }
    write_json(parent / FOLDS_FILE, record)
    if config.plan is not None:
        race = config.plan.facts.get("race") or {}
        if race.get("candidates"):  # folds train the rules' first choice: no fold races
            names = "; ".join(candidate["name"] for candidate in race["candidates"])
            config.plan.facts["race"] = {
                "off": f"--folds: each fold trains the rules' first choice (would race: {names})"
            }
        config.plan.write(parent)
        if total_budget_s is not None:
            say(f"--time-budget is the whole run's ({total_budget_s:g} s): the plan is for one fold's share")
    say(
        f"{folds} folds of {len(assignment)} photos (train and valid pooled, --seed {values['seed']}): "
        f"{parent}"
    )
    return _train_missing(parent, record, config, only, echo, callbacks)


def _join(
    parent: Path, config: ResolvedConfig, folds: int, only: int | None, echo: Echo, callbacks
) -> FoldsResult:
    """Train in a parent another process made (``--parent DIR`` given to each fold's job)."""
    record = read_json_object(parent / FOLDS_FILE)
    if int(record["folds"]) != folds or record.get("seed") != config.values["seed"]:
        raise UsageError(
            f"--parent {parent} holds {record['folds']} folds cut with --seed {record.get('seed')}, not "
            f"{folds} with --seed {config.values['seed']}"
        )
    recorded = record["config"]
    differ = [
        key
        for key, value in json.loads(json.dumps(config.values, default=str)).items()
        if key not in JOIN_MAY_DIFFER
        and not config.sources.get(key, "").startswith("plan")  # a planner's timings vary by job
        and recorded.get(key) != value
    ]
    if differ:
        shown = ", ".join(
            f"{key} {recorded.get(key)!r} there, {config.values[key]!r} here" for key in differ[:3]
        )
        raise UsageError(
            f"--parent {parent} trains its folds with other settings ({shown}): one parent holds one "
            "configuration; give this one its own --parent"
        )
    # The parent's settings, with this job's own device, workers, output and verbosity.
    own = {key: config.values[key] for key in JOIN_MAY_DIFFER if key in config.values}
    joined = ResolvedConfig({**record["config"], **own}, dict(record["sources"]))
    return _train_missing(parent, record, joined, only, echo, callbacks)


def resume_folds(
    parent: Path, flags: dict[str, Any], echo: Echo = print, callbacks: Sequence[Any] = ()
) -> FoldsResult:
    """``--resume PARENT``: train the folds not finished (continuing those with a ``last.pt``)."""
    parent = Path(parent)
    record = read_json_object(parent / FOLDS_FILE)
    config = ResolvedConfig(dict(record["config"]), dict(record.get("sources") or {}))
    given = {key: value for key, value in flags.items() if value is not None}
    refused = sorted(key for key in given if key not in JOIN_MAY_DIFFER)
    if refused:
        raise UsageError(
            f"--resume {parent} finishes its folds with the settings they recorded; {', '.join(refused)} "
            f"cannot change here (to train one fold further: segkit run --resume {fold_folder(parent, 0)} "
            "with the flag)"
        )
    config.values.update(given)
    return _train_missing(parent, record, config, None, echo, callbacks)


def _train_missing(
    parent: Path,
    record: dict[str, Any],
    config: ResolvedConfig,
    only: int | None,
    echo: Echo,
    callbacks: Sequence[Any],
) -> FoldsResult:
    folds = int(record["folds"])
    say = _say(config, echo)
    results: dict[int, RunResult] = {}
    wanted = [only] if only is not None else list(range(folds))
    devices = side_by_side_devices(config.values.get("device", "auto"), len(wanted))
    if devices:
        say(f"folds side by side, one process per device: {', '.join(devices)}")
        _train_side_by_side(parent, record, config, wanted, devices)
        wanted = []
    for index in wanted:
        if index in finished_folds(parent, folds):
            say(f"fold {index}: done already")
            continue
        started = time.monotonic()
        say(f"fold {index} of {folds}: training ({fold_folder(parent, index)})")
        results[index] = _train_fold(parent, record, config, index, echo, callbacks)
        _mark_finished(parent, index, results[index], started)
    summary = None
    if len(finished_folds(parent, folds)) == folds:
        summary = choose_out_of_fold(parent, record, config, echo)
    else:
        missing = sorted(set(range(folds)) - set(finished_folds(parent, folds)))
        say(
            f"folds not trained yet: {', '.join(map(str, missing))} "
            f"(segkit run --resume {parent} trains them)"
        )
    return FoldsResult(parent, results, summary)


def side_by_side_devices(device: str, folds: int) -> list[str]:
    """The GPUs to train folds on at once: every CUDA device when ``--device`` is "auto" or "cuda" and
    there are several (and several folds to train); else none (one after the other)."""
    import torch

    if folds < 2 or device not in ("auto", "cuda") or not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    return [f"cuda:{index}" for index in range(count)] if count > 1 else []


def _train_side_by_side(
    parent: Path, record: dict[str, Any], config: ResolvedConfig, wanted: list[int], devices: list[str]
) -> None:
    """Each device's process trains its share of ``wanted`` (fold i on device i mod n), quietly."""
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    shares = [wanted[start :: len(devices)] for start in range(len(devices))]
    values = {**config.values, "quiet": True}
    processes = [
        context.Process(
            target=_fold_worker, args=(parent, record, values, dict(config.sources), share, device)
        )
        for share, device in zip(shares, devices, strict=False)
        if share
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    failed = [process.exitcode for process in processes if process.exitcode]
    if failed:
        raise UsageError(
            f"{len(failed)} fold process(es) failed; segkit run --resume {parent} trains what is missing"
        )


def _fold_worker(
    parent: Path,
    record: dict[str, Any],
    values: dict[str, Any],
    sources: dict[str, str],
    share: list[int],
    device: str,
) -> None:
    """One device's folds, one after the other (a spawned process: ``_train_side_by_side``)."""
    config = ResolvedConfig({**values, "device": device}, sources)
    for index in share:
        started = time.monotonic()
        result = _train_fold(parent, record, config, index, print, ())
        _mark_finished(parent, index, result, started)


def _mark_finished(parent: Path, index: int, result: RunResult, started: float) -> None:
    write_json(
        fold_folder(parent, index) / FINISHED_FILE,
        {
            "seconds": round(time.monotonic() - started, 1),
            "best": result.best_dice,
            "best_epoch": result.best_epoch,
        },
    )


def _train_fold(
    parent: Path,
    record: dict[str, Any],
    config: ResolvedConfig,
    index: int,
    echo: Echo,
    callbacks: Sequence[Any],
) -> RunResult:
    folder = fold_folder(parent, index)
    if (folder / "last.pt").is_file():
        resumed = resolve_resumed_config(folder, {"quiet": config.values.get("quiet")})
        last = load_checkpoint(folder / "last.pt")
        if _nothing_left(last, resumed.values):  # trained to its end, stopped before it was marked
            return RunResult(folder, float(last.get("best_dice") or 0.0), int(last.get("best_epoch") or 0))
        return fit(resumed, echo=echo, resume_dir=folder, callbacks=callbacks)
    if folder.exists():  # stopped before its first checkpoint: nothing to continue from
        shutil.rmtree(folder)
    values = dict(config.values)
    if record.get("fold_time_budget_s") is not None:
        values["time_budget"] = record["fold_time_budget_s"]
    fold_config = ResolvedConfig(values, dict(config.sources))
    fold_config.fold = fold_record(record["assignment"], index, int(record["folds"]), int(record["seed"]))
    return fit(fold_config, echo=echo, callbacks=callbacks, run_dir=folder)


def _nothing_left(last: dict[str, Any], values: dict[str, Any]) -> bool:
    """Whether a fold's ``last.pt`` has trained all its epochs or spent its time budget."""
    spent = float((last.get("schedule_state") or {}).get("elapsed_s", 0.0))
    budget = values.get("time_budget")
    return int(last.get("epoch") or 0) >= int(values["epochs"]) or (
        budget is not None and spent >= float(budget)
    )


def cut_folds(values: dict[str, Any], folds: int) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Every pooled photo's fold (stratified, from ``--seed``), and how the strata spread."""
    parts = pooled_splits(lambda split, _train: build_split(values, split, values["image_size"]), False)
    kind = getattr(parts[0][1], "task", "binary")
    strata = photo_strata(parts, kind)
    assignment = assign_folds(strata, folds, int(values["seed"]))
    return assignment, strata_table(strata, assignment, folds)


def choose_out_of_fold(
    parent: Path, record: dict[str, Any], config: ResolvedConfig, echo: Echo
) -> dict[str, Any]:
    """Predict every fold's held-out photos with its model, choose on all of them, and record it."""
    say = _say(config, echo)
    folds = int(record["folds"])
    started = time.monotonic()
    photos = []
    device = resolve_device(config.values.get("device", "auto"))
    task = None
    for index in range(folds):
        trained = load_trained_model(fold_folder(parent, index), device=device)
        task = trained.task
        photos += collect_held_out(trained, index, quiet=bool(config.values.get("quiet")))
    assert task is not None
    summary = summarize(photos, task.kind, list(task.class_names), _averaged(task), folds)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["metric"] = metric_words(task.kind)
    record = read_json_object(parent / FOLDS_FILE)
    record["out_of_fold"] = summary
    record["inference"] = summary["inference"]
    write_json(parent / FOLDS_FILE, record)
    for line in describe_out_of_fold(summary):
        say(line)
    return summary


def _averaged(task: Any) -> list[int]:
    return [0] if task.kind == "binary" else list(task.averaged)


def _say(config: ResolvedConfig, echo: Echo) -> Echo:
    return (lambda _text: None) if config.values.get("quiet") else echo
