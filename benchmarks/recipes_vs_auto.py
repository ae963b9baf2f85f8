"""Fixed recipes against ``--recipe auto`` under equal time budgets, on the data you have.

Each case trains ``segkit run ... --recipe R --time-budget B`` for every arm R of ``--recipes``, one
after another on this machine, evaluates the best checkpoint on the valid split at each image's
original size with the run's own inference settings (``segkit evaluate RUN --split valid``), and
appends one JSON line per run to ``OUT/results.jsonl``: the case, arm, command, score (per-image Dice
for binary tasks, mean IoU pooled over the split for multi-class ones, over the foreground classes
where one is the background), each class's IoU, epochs, and for auto the plan's choices. An arm
``RECIPE:FLAGS`` is recipe RECIPE with more ``segkit run`` flags for that arm alone
(``auto:--no-race``), labelled as written. ``--baseline smp`` adds one more row per case: the plain
loop over smp's Unet-ResNet34 (``smp_baseline.py``, same budget, same data and ``--dataset-option``s
as in ``--extra``), scored with the same definition. A markdown table of every result so far is
printed at the end (and written to ``OUT/results.md``).

    python benchmarks/recipes_vs_auto.py OUT pets oxford_pet ../shared/datasets/oxford-iiit-pet-mini 15m
    python benchmarks/recipes_vs_auto.py OUT trimap oxford_pet ../shared/datasets/oxford-iiit-pet-mini 15m \
        --extra "--dataset-option task=trimap" --baseline smp
    python benchmarks/recipes_vs_auto.py OUT thin folder /tmp/thin 10m          # generated_datasets.py thin
    python benchmarks/recipes_vs_auto.py OUT street folder /tmp/street 15m      # generated_datasets.py street
    python benchmarks/recipes_vs_auto.py OUT street folder /tmp/street 15m --recipes auto,auto:--no-race \
        --baseline smp
    python benchmarks/recipes_vs_auto.py OUT thin folder /tmp/thin 10m --recipes auto --extra "--seed 1"

The model is ``resnet34_unet`` for the fixed recipes (the one they were tuned with); auto chooses its own
unless ``--extra`` fixes one. Runs are long (the budget each, plus evaluation); this is a script, not a
test.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

SMP_BASELINE = Path(__file__).resolve().with_name("smp_baseline.py")
BASELINE_LABEL = "smp Unet-ResNet34 loop"


def score_of(summary: dict) -> tuple[str, float]:
    """The figure a row shows, from ``segkit evaluate``'s summary.json (smp_baseline.py uses it too)."""
    scores = summary.get("original_resolution") or summary.get("network_resolution") or {}
    if "iou_macro_dataset" in scores:
        return "mean IoU (classes, pooled, original size)", float(scores["iou_macro_dataset"])
    return "Dice (per-image mean, original size)", float(scores["dice_per_image"])


def class_ious(summary: dict) -> dict[str, float]:
    """Each class's IoU pooled over the split (original size), for several classes; else {}."""
    scores = summary.get("original_resolution") or summary.get("network_resolution") or {}
    return {name: round(float(scores[f"iou_{name}"]), 4) for name in summary.get("classes", [])}


def parse_arm(arm: str) -> tuple[str, list[str]]:
    """``"auto:--no-race"`` -> ``("auto", ["--no-race"])``: the recipe, and the arm's own flags."""
    recipe, _, flags = arm.partition(":")
    return recipe.strip(), shlex.split(flags)


def folder_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", label).strip("-")


def run_case(out: Path, case: str, dataset: str, data_path: str, budget: str, arm: str, extra: str) -> dict:
    recipe, arm_flags = parse_arm(arm)
    runs = out / f"{case}-{folder_name(arm)}"
    command = ["segkit", "run", "--dataset", dataset, "--data-path", data_path, "--recipe", recipe,
               "--time-budget", budget, "--out", str(runs)]  # fmt: skip
    if recipe != "auto" and "--model" not in extra and "--model" not in arm_flags:
        command += ["--model", "resnet34_unet"]
    command += arm_flags + shlex.split(extra)
    started = time.monotonic()
    trained = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if trained.returncode != 0:
        return {
            "case": case,
            "recipe": arm,
            "command": shlex.join(command),
            "error": trained.stderr[-2000:],
        }
    run_dir = sorted(path for path in runs.iterdir() if path.is_dir())[-1]
    evaluate = ["segkit", "evaluate", str(run_dir), "--split", "valid", "--quiet", "--no-boundary"]
    evaluated = subprocess.run(evaluate, capture_output=True, text=True, check=False)
    if evaluated.returncode != 0:
        return {
            "case": case,
            "recipe": arm,
            "command": shlex.join(command),
            "error": evaluated.stderr[-2000:],
        }
    summary = json.loads((run_dir / "eval-valid" / "summary.json").read_text())
    metric, score = score_of(summary)
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    result = {
        "case": case,
        "recipe": arm,
        "command": shlex.join(command),
        "evaluate": shlex.join(evaluate),
        "metric": metric,
        "score": round(score, 4),
        "iou_per_class": class_ious(summary),
        "epochs": len(rows) - 1,
        "wall_s": round(seconds),
        "run": str(run_dir),
    }
    plan = run_dir / "plan.json"
    if plan.is_file():
        result["plan"] = json.loads(plan.read_text())["settings"]
    return result


def baseline_command(dataset: str, data_path: str, budget: str, extra: str) -> list[str]:
    """``smp_baseline.py`` on the same data, with the ``--dataset-option``s and ``--seed`` of
    ``extra`` (the other ``segkit run`` flags have no meaning for the plain loop)."""
    command = [sys.executable, str(SMP_BASELINE), dataset, data_path, budget]
    words = shlex.split(extra)
    for index, word in enumerate(words):
        flag, equals, value = word.partition("=")
        if flag in ("--dataset-option", "--seed"):
            value = value if equals else (words[index + 1] if index + 1 < len(words) else "")
            command += [flag, value]
    return command


def run_baseline(case: str, dataset: str, data_path: str, budget: str, extra: str) -> dict:
    command = baseline_command(dataset, data_path, budget, extra)
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"case": case, "recipe": BASELINE_LABEL, "command": shlex.join(command),
                "error": done.stderr[-2000:]}  # fmt: skip
    line = json.loads(lines[-1])
    return {
        "case": case,
        "recipe": BASELINE_LABEL,
        "command": shlex.join(command),
        "metric": line["metric"],
        "score": line["score"],
        "iou_per_class": line.get("iou_per_class", {}),
        "epochs": line["epochs"],
        "wall_s": round(seconds),
        "baseline": line,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| case | recipe | score | metric | epochs | plan | per-class IoU |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['recipe']} | failed | | | | |")
            continue
        plan = r.get("plan", {})
        shown = ", ".join(
            f"{k}={plan[k]}" for k in ("model", "image_size", "crop_size", "tile", "loss") if k in plan
        )
        if "baseline" in r:
            height, width = r["baseline"]["input_size"]
            shown = f"whole photos at {height}x{width}, {r['baseline']['steps']} steps"
        classes = " ".join(f"{value:.2f}" for value in r.get("iou_per_class", {}).values())
        lines.append(
            f"| {r['case']} | {r['recipe']} | {r['score']:.4f} | {r['metric']} | {r['epochs']} | {shown} "
            f"| {classes} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("case", help="a name for this data (pets, thin, street, ...)")
    parser.add_argument("dataset", help="registered dataset name (folder, oxford_pet, ...)")
    parser.add_argument("data_path")
    parser.add_argument("budget", help="--time-budget of every run, e.g. 15m")
    parser.add_argument(
        "--recipes",
        default="budget,auto",
        help="comma-separated arms, each a recipe or RECIPE:FLAGS with `segkit run` flags for that arm "
        "alone, e.g. auto,auto:--no-race (default: budget,auto)",
    )
    parser.add_argument("--extra", default="", help="more `segkit run` flags for every run")
    parser.add_argument(
        "--baseline",
        choices=["smp"],
        action="append",
        default=[],
        help="also run the plain loop over smp's Unet-ResNet34 (smp_baseline.py), same budget",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "results.jsonl"
    runs = [
        lambda arm=arm: run_case(
            args.out, args.case, args.dataset, args.data_path, args.budget, arm, args.extra
        )
        for arm in args.recipes.split(",")
    ]
    if "smp" in args.baseline:
        runs.append(lambda: run_baseline(args.case, args.dataset, args.data_path, args.budget, args.extra))
    for run in runs:
        result = run()
        with record.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    results = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1:])
