"""Fixed recipes against ``--recipe auto`` under equal time budgets, on the data you have.

Each case trains ``segkit run ... --recipe R --time-budget B`` for every recipe R, one after another on
this machine, evaluates the best checkpoint on the valid split at each image's original size with the
run's own inference settings (``segkit evaluate RUN --split valid``), and appends one JSON line per
run to ``OUT/results.jsonl``: the case, recipe, command, score (per-image Dice for binary tasks, mean
IoU over classes pooled over the split for multi-class ones), epochs, and for auto the plan's choices.
A markdown table of every result so far is printed at the end (and written to ``OUT/results.md``).

    python benchmarks/recipes_vs_auto.py OUT pets oxford_pet ../shared/datasets/oxford-iiit-pet-mini 15m
    python benchmarks/recipes_vs_auto.py OUT thin folder /tmp/thin 10m          # generated_datasets.py thin
    python benchmarks/recipes_vs_auto.py OUT street folder /tmp/street 15m      # generated_datasets.py street
    python benchmarks/recipes_vs_auto.py OUT thin folder /tmp/thin 10m --recipes auto --extra "--seed 1"

The model is ``resnet34_unet`` for the fixed recipes (the one they were tuned with); auto chooses its own
unless ``--extra`` fixes one. Runs are long (the budget each, plus evaluation); this is a script, not a
test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def score_of(summary: dict) -> tuple[str, float]:
    scores = summary.get("original_resolution") or summary.get("network_resolution") or {}
    if "iou_macro_dataset" in scores:
        return "mean IoU (classes, pooled, original size)", float(scores["iou_macro_dataset"])
    return "Dice (per-image mean, original size)", float(scores["dice_per_image"])


def run_case(
    out: Path, case: str, dataset: str, data_path: str, budget: str, recipe: str, extra: str
) -> dict:
    runs = out / f"{case}-{recipe}"
    command = ["segkit", "run", "--dataset", dataset, "--data-path", data_path, "--recipe", recipe,
               "--time-budget", budget, "--out", str(runs)]  # fmt: skip
    if recipe != "auto" and "--model" not in extra:
        command += ["--model", "resnet34_unet"]
    command += shlex.split(extra)
    started = time.monotonic()
    trained = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.monotonic() - started
    if trained.returncode != 0:
        return {
            "case": case,
            "recipe": recipe,
            "command": shlex.join(command),
            "error": trained.stderr[-2000:],
        }
    run_dir = sorted(path for path in runs.iterdir() if path.is_dir())[-1]
    evaluate = ["segkit", "evaluate", str(run_dir), "--split", "valid", "--quiet", "--no-boundary"]
    evaluated = subprocess.run(evaluate, capture_output=True, text=True, check=False)
    if evaluated.returncode != 0:
        return {
            "case": case,
            "recipe": recipe,
            "command": shlex.join(command),
            "error": evaluated.stderr[-2000:],
        }
    summary = json.loads((run_dir / "eval-valid" / "summary.json").read_text())
    metric, score = score_of(summary)
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    result = {
        "case": case,
        "recipe": recipe,
        "command": shlex.join(command),
        "evaluate": shlex.join(evaluate),
        "metric": metric,
        "score": round(score, 4),
        "epochs": len(rows) - 1,
        "wall_s": round(seconds),
        "run": str(run_dir),
    }
    plan = run_dir / "plan.json"
    if plan.is_file():
        result["plan"] = json.loads(plan.read_text())["settings"]
    return result


def table(results: list[dict]) -> str:
    lines = ["| case | recipe | score | metric | epochs | plan |", "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['recipe']} | failed | | | |")
            continue
        plan = r.get("plan", {})
        shown = ", ".join(
            f"{k}={plan[k]}" for k in ("model", "image_size", "crop_size", "tile", "loss") if k in plan
        )
        lines.append(
            f"| {r['case']} | {r['recipe']} | {r['score']:.4f} | {r['metric']} | {r['epochs']} | {shown} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("case", help="a name for this data (pets, thin, street, ...)")
    parser.add_argument("dataset", help="registered dataset name (folder, oxford_pet, ...)")
    parser.add_argument("data_path")
    parser.add_argument("budget", help="--time-budget of every run, e.g. 15m")
    parser.add_argument("--recipes", default="budget,auto", help="comma-separated (default: budget,auto)")
    parser.add_argument("--extra", default="", help="more `segkit run` flags for every run")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    record = args.out / "results.jsonl"
    for recipe in args.recipes.split(","):
        result = run_case(args.out, args.case, args.dataset, args.data_path, args.budget, recipe, args.extra)
        with record.open("a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(json.dumps(result), flush=True)
    results = [json.loads(line) for line in record.read_text().splitlines() if line.strip()]
    (args.out / "results.md").write_text(table(results) + "\n")
    print(table(results))


if __name__ == "__main__":
    main(sys.argv[1:])
