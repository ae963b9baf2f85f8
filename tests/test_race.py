"""``--recipe auto``'s race (issue 30): the context measure and the rare-class remedy the planner reads,
the candidates it races and when it does not, the pause that lets a candidate train in slices, and the
race itself (successive halving, the winner continuing, the losers' folders, plan.json, the report)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_planning import FakeClock, MaskList, Request, blobs

from segkit.config.resolve import resolve_run_config
from segkit.engine import budget as budget_module
from segkit.engine.budget import RunClock
from segkit.engine.trainer import BUDGET_REACHED, PAUSED, RunResult
from segkit.planning import Plan, auto, describe_race
from segkit.planning.fingerprint import compute_fingerprint
from segkit.racing import race as race_module
from segkit.reporting.report import race_content

# -- the context measure ------------------------------------------------------------------------------

STREET_NAMES = ["sky", "building", "pole", "road", "pavement", "car", "pedestrian"]


def street(**changes):
    """A made-up fingerprint of street scenes, 480x360: sky and road large and thick, building and
    pavement thick but each region under a 128-px crop's share of the photo (0.0948), poles thin."""
    found = blobs(
        images=370, height=[360] * 3, width=[480] * 3, task="multiclass", class_names=STREET_NAMES,
        class_share=[0.2, 0.17, 0.008, 0.38, 0.14, 0.09, 0.012],
        class_width_px=[25.0, 13.0, 1.4, 33.0, 12.0, 8.0, 2.5],
        class_region_share=[0.19, 0.09, 0.005, 0.36, 0.09, 0.012, 0.002],
        class_thickest_px=[86.0, 77.0, 3.0, 150.0, 68.0, 29.0, 9.0],
        classes_per_image=6.0, foreground_fraction=[1.0, 1.0, 1.0], objects_per_image=1,
    )  # fmt: skip
    return replace(found, **changes)


def vessels(**changes):
    """A made-up fingerprint of retinal vessels, 565x584, 16 photos: one thin tree per photo."""
    found = blobs(
        images=16, height=[584] * 3, width=[565] * 3, class_share=[0.12], class_width_px=[3.0],
        class_region_share=[0.1], class_thickest_px=[10.0], structure_width_px=3.0,
        foreground_fraction=[0.1, 0.12, 0.14], objects_per_image=3,
    )  # fmt: skip
    return replace(found, **changes)


def test_context_classes_are_thick_and_larger_than_the_window():
    assert street().context_classes(128) == ["sky", "road"]
    # a 256-px window covers 0.38 of the photo, more than any region (road's 0.36)
    assert street().context_classes(256) == []
    assert street().context_classes(64) == ["sky", "building", "road", "pavement"]
    assert vessels().context_classes(128) == []
    assert blobs().context_classes(128) == []  # no context measures recorded: none claimed


@st.composite
def one_rectangle(draw):
    height, width = draw(st.integers(60, 120)), draw(st.integers(60, 120))
    box_h, box_w = draw(st.integers(2, height)), draw(st.integers(2, width))
    top, left = draw(st.integers(0, height - box_h)), draw(st.integers(0, width - box_w))
    window = draw(st.integers(16, 60))
    mask = np.zeros((height, width), np.uint8)
    mask[top : top + box_h, left : left + box_w] = 1
    return mask, (box_h, box_w), window


@given(one_rectangle())
@settings(deadline=None, max_examples=60)
def test_a_drawn_rectangle_needs_context_when_thicker_than_half_the_window_and_larger_than_it(drawn):
    """Against plain geometry: a solid rectangle is about min(h, w) thick (the measure is 2d - 1 of
    the deepest pixel: the side or one less), and covers h*w pixels against the window's side^2."""
    mask, (box_h, box_w), window = drawn
    assume(abs(min(box_h, box_w) - 0.5 * window) >= 2)
    assume(abs(box_h * box_w - window**2) >= 0.02 * window**2)
    found = compute_fingerprint(MaskList([mask, mask.copy()]))
    expected = min(box_h, box_w) >= 0.5 * window and box_h * box_w > window**2
    assert (found.context_classes(window) == ["foreground"]) == expected


# -- the rare-class remedy ------------------------------------------------------------------------------


@given(st.lists(st.floats(1e-5, 1.0), min_size=2, max_size=12))
@settings(deadline=None, max_examples=80)
def test_class_weights_grow_as_a_class_gets_rarer_within_bounds(shares):
    """Against numpy: (median share / share) ** 0.5, clipped to [0.1, 10]; a rarer class never weighs
    less than a more common one; the median class weighs 1."""
    found = street(class_names=[f"c{i}" for i in range(len(shares))], class_share=shares)
    weights = auto.class_weights(found)
    expected = np.clip((np.median(shares) / np.array(shares)) ** 0.5, 0.1, 10.0)
    assert weights == pytest.approx(expected.tolist(), abs=1e-3)
    order = np.argsort(shares)
    assert all(weights[a] >= weights[b] for a, b in zip(order, order[1:], strict=False))


def test_a_class_without_pixels_gets_the_largest_weight():
    found = street(class_names=["a", "b", "c"], class_share=[0.5, 0.5, 0.0])  # median share 0.5
    assert auto.class_weights(found) == [1.0, 1.0, 10.0]


# -- the candidates the planner races ------------------------------------------------------------------


def race_of(plan: Plan) -> dict:
    return plan.facts["race"]


def test_street_scenes_resize_first_and_race_native_crops():
    """The finding of issue 30: thin poles made auto crop 128-px windows of a street, which cannot
    tell road from pavement. Context now comes first, and crops are raced, not trusted."""
    plan = auto.plan_auto(Request(street(), 0.3, time_budget=900))
    assert plan.settings.get("crop_size") is None and "needs context" not in plan.reasons["_sampling"]
    assert "sky, road" in plan.reasons["_sampling"] and plan.settings["progressive_sizes"] == []
    candidates = race_of(plan)["candidates"]
    assert candidates[0]["settings"] == {} and candidates[0]["name"].startswith("whole photos resized")
    crops = candidates[1]["settings"]
    assert crops["crop_size"] in auto.RULES["crop_sizes"] and crops["tile"] >= crops["crop_size"]
    assert crops.get("progressive_sizes", []) == []


def test_vessels_crop_and_have_nothing_to_race():
    plan = auto.plan_auto(Request(vessels(), 0.3, time_budget=600))
    assert plan.settings["crop_size"] == 128
    assert "off" in race_of(plan) and "one reasonable plan" in race_of(plan)["off"]


def test_rare_classes_are_raced_with_class_weights_when_the_budget_holds_three_candidates():
    found = street(class_share=[0.2, 0.17, 0.008, 0.38, 0.14, 0.09, 0.002])  # pole, pedestrian rare
    plan = auto.plan_auto(Request(found, 0.05, time_budget=3600))
    names = [candidate["name"] for candidate in race_of(plan)["candidates"]]
    assert len(names) == 3 and names[2].endswith("class weights")
    weights = race_of(plan)["candidates"][2]["settings"]["loss_options"]["class_weights"]
    assert weights == auto.class_weights(found) and weights[STREET_NAMES.index("pedestrian")] > 1
    # a short budget cannot hold three first slices of 60 steps: the last candidates go
    short = auto.plan_auto(Request(found, 1.0, time_budget=900))
    kept = [c["name"] for c in race_of(short)["candidates"]]
    assert len(kept) == 2 and kept[1].startswith("crops")


def test_no_race_when_asked_when_the_budget_is_short_or_the_user_fixed_the_sampling():
    off = auto.plan_auto(Request(street(), 0.3, time_budget=900, race=False))
    assert "--no-race" in race_of(off)["off"] and "crops" in race_of(off)["off"]
    assert off.settings["progressive_sizes"] != []  # without a race, progressive sizes stay
    short = auto.plan_auto(Request(street(), 0.3, time_budget=120))
    assert "budget too short" in race_of(short)["off"]
    fixed = auto.plan_auto(Request(street(), 0.3, time_budget=900, crop_size=128, image_size=128))
    names = [candidate["name"] for candidate in race_of(fixed)["candidates"]]  # crops: the user's
    assert names == ["crops 128 px, tiles 256 px", "crops 128 px, tiles 256 px, class weights"]


@given(st.integers(2, 9), st.floats(10, 5000))
def test_race_schedule_halves_the_field_and_spends_the_race_in_equal_rounds(candidates, race_s):
    schedule = auto.race_schedule(candidates, race_s)
    counts = [count for count, _ in schedule]
    assert counts[0] == candidates and counts[-1] == min(2, candidates)
    assert all(b == math.ceil(a / 2) for a, b in zip(counts, counts[1:], strict=False))
    assert len(schedule) == max(1, math.ceil(math.log2(candidates)))
    for count, seconds in schedule:  # each round an equal share, split evenly (to 0.1 s)
        assert seconds == pytest.approx(race_s / len(schedule) / count, abs=0.05 + 1e-9)


def test_segkit_plan_shows_the_candidates_and_why():
    lines = describe_race(race_of(auto.plan_auto(Request(street(), 1.0, time_budget=900))))
    assert lines[0].startswith("  race: 2 candidates") and "25% of the budget" in lines[0]
    assert len(lines) == 3
    assert "1. whole photos resized" in lines[1] and "the rules' first choice" in lines[1]
    assert "2. crops" in lines[2] and "sky, road need context" in lines[2] and "crop_size=" in lines[2]


# -- the pause ---------------------------------------------------------------------------------------


def test_a_pause_stops_where_the_budget_would_and_the_budget_wins_past_it(monkeypatch):
    ticks = FakeClock()
    monkeypatch.setattr(budget_module.time, "monotonic", ticks)
    clock = RunClock(1000, budget_s=100.0, elapsed_before=5.0, pause_at_s=20.0)
    steps = 0
    while clock.next_step_fits():
        steps += 1
        ticks.now += 2.0
    # steps of 2 s from 5 s: the one that would end past 20 s is not begun
    assert steps == 7 and clock.paused and clock.elapsed() <= 20.0
    late = RunClock(1000, budget_s=30.0, elapsed_before=27.0, pause_at_s=40.0)
    assert late.next_step_fits() is True
    ticks.now += 2.0
    assert late.next_step_fits() is False and not late.paused  # the budget ended it, not the pause
    both = RunClock(1000, budget_s=30.0, elapsed_before=27.0, pause_at_s=28.0)
    assert both.next_step_fits() is True
    ticks.now += 2.0
    assert both.next_step_fits() is False and not both.paused  # past both: the budget's end, not a pause


# -- the race ----------------------------------------------------------------------------------------


class FakeFits:
    """``fit`` for the race's arithmetic: a run folder per candidate, each call recorded, no training."""

    def __init__(self, root: Path):
        self.root, self.calls, self.made = root, [], 0

    def __call__(self, config, echo=print, resume_dir=None, callbacks=(), pause_at_s=None):
        if resume_dir is None:
            self.made += 1
            resume_dir = self.root / f"run-{self.made}"
            resume_dir.mkdir(parents=True)
            (resume_dir / "config.json").write_text(json.dumps({"config": config.values}))
            for name in ("best.pt", "last.pt"):
                (resume_dir / name).write_bytes(b"weights")
        self.calls.append((resume_dir.name, config["time_budget"], pause_at_s, config["learning_rate"]))
        history = [{"epoch": 1}]
        return RunResult(resume_dir, 0.5, 1, history, PAUSED if pause_at_s else BUDGET_REACHED, "m")


def raced_config(tmp_path: Path, candidates: list[dict], race_s: float = 100.0):
    config = resolve_run_config({"time_budget": 1000, "out": str(tmp_path)}, None, None)
    plan = Plan("auto", seconds=10.0)
    schedule = auto.race_schedule(len(candidates), race_s)
    plan.facts["race"] = {"share": 0.25, "seconds": race_s, "schedule": schedule, "candidates": candidates}
    config.plan = plan
    return config


def fake_race(monkeypatch, tmp_path: Path, scores: dict[str, float], tick_s: int) -> FakeFits:
    """The race with a fake ``fit``, each candidate's run scored ``scores[run folder name]``, and a clock
    that moves ``tick_s`` seconds at each look."""
    fits = FakeFits(tmp_path / "runs")
    monkeypatch.setattr(race_module, "fit", fits)
    monkeypatch.setattr(race_module, "resolve_resumed_config", _resumed)
    monkeypatch.setattr(race_module.Race, "_score", lambda self, run_dir, number: ("m", scores[run_dir.name]))
    ticks = iter(range(0, 1_000_000, tick_s))
    monkeypatch.setattr(race_module.time, "monotonic", lambda: float(next(ticks)))
    return fits


def test_the_race_keeps_the_better_half_and_the_winner_continues_with_the_budget(tmp_path, monkeypatch):
    # the score each candidate's run gets; ten seconds at each look at the clock: the race overruns
    fits = fake_race(monkeypatch, tmp_path, {"run-1": 0.1, "run-2": 0.7, "run-3": 0.4}, tick_s=10)
    candidates = [
        {"name": f"lr {rate}", "settings": {"learning_rate": rate}, "reason": "test"}
        for rate in (0.001, 0.002, 0.003)
    ]
    config = raced_config(tmp_path, candidates, race_s=100.0)
    result = race_module.train(config, echo=lambda text: None)
    # three slices of 100/2/3 s, then the two best (run-2, run-3) slices of 100/2/2 s; run-1 stops
    first, second = 10.0 + round(100 / 6, 1), 10.0 + round(100 / 6, 1) + 25.0
    assert [call[0] for call in fits.calls[:5]] == ["run-1", "run-2", "run-3", "run-2", "run-3"]
    assert [call[2] for call in fits.calls[:5]] == pytest.approx([first] * 3 + [second] * 2)
    # every candidate's budget is the winner's: the budget less the losers' planned share
    candidate_budget = 1000 - (100 - (round(100 / 6, 1) + 25.0))
    assert fits.calls[0][1] == pytest.approx(round(candidate_budget, 1))
    winner_call = fits.calls[-1]
    assert len(fits.calls) == 6 and winner_call[0] == "run-2" and winner_call[2] is None
    assert result.run_dir == tmp_path / "runs" / "run-2"
    record = json.loads((result.run_dir / "plan.json").read_text())["facts"]["race"]
    # what the race took beyond its 100 s comes off the winner's budget
    assert record["overrun_s"] > 0
    assert winner_call[1] == pytest.approx(candidate_budget - record["overrun_s"], abs=0.1)
    # the losers moved into the winner's race/, checkpoints deleted, their records kept
    for loser in ("run-1", "run-3"):
        moved = result.run_dir / "race" / loser
        assert (moved / "config.json").exists() and not list(moved.glob("*.pt"))
    assert not (tmp_path / "runs" / "run-1").exists()
    assert record["winner"] == 2
    assert [[r["score"] for r in c["rounds"]] for c in record["candidates"]] == [
        [0.1],
        [0.7, 0.7],
        [0.4, 0.4],
    ]
    assert record["cost_s"] > 0 and record["candidates"][0]["run_dir"].endswith("race/run-1")


def _resumed(run_dir: Path, flags: dict):
    values = json.loads((run_dir / "config.json").read_text())["config"]
    config = resolve_run_config({**values, **flags}, None, None)
    return config


def test_a_race_whose_overrun_spends_the_budget_stops_the_winner_and_says_so(tmp_path, monkeypatch):
    fits = fake_race(monkeypatch, tmp_path, {f"run-{number}": 0.5 for number in range(1, 5)}, tick_s=500)
    candidates = [{"name": n, "settings": {}, "reason": "test"} for n in ("a", "b")]
    said = []
    result = race_module.train(raced_config(tmp_path, candidates), echo=said.append)
    assert result.stop_reason == BUDGET_REACHED and len(fits.calls) == 2
    assert "spent the rest of the budget" in said[-1]
    quiet = raced_config(tmp_path / "quiet", candidates)
    quiet.values["quiet"] = True
    heard = []
    race_module.train(quiet, echo=heard.append)
    assert heard == []  # --quiet: the race says nothing, as the epochs do not


def test_the_report_shows_the_race_and_says_why_there_was_none():
    words, rows = race_content({"off": "--no-race: the rules' first choice trains alone"})
    assert words.startswith("No race: --no-race") and rows == []
    record = {
        "share": 0.25, "metric": "valid mean IoU", "winner": 2, "cost_s": 50.0, "overrun_s": 4.0,
        "candidates": [
            {"name": "resize", "settings": {}, "rounds": [{"score": 0.31}], "seconds": 50},
            {"name": "crops", "settings": {"crop_size": 128}, "rounds": [{"score": 0.42}], "seconds": 52},
        ],
    }  # fmt: skip
    words, rows = race_content(record)
    assert "2 candidate plans" in words and "50 s" in words
    assert rows[1] == ("2. crops", "crop_size=128", "0.4200", "52", "won: this run")
    assert rows[0][-1].startswith("lost")


# -- a real race, end to end ---------------------------------------------------------------------------


def test_a_real_race_pauses_scores_resumes_and_continues_the_winner(tmp_path):
    """Two candidates of a tiny UNet on synthetic shapes: each pauses at its slice, is scored on the
    valid split, the better resumes to the end of the budget, the loser lands in race/."""
    values = {
        "dataset": "synthetic", "dataset_options": {"task": "multiclass", "train_size": 24, "valid_size": 8},
        "image_size": 32, "model": "unet", "model_options": {"base_channels": 4}, "device": "cpu",
        "epochs": 1000, "time_budget": 9, "batch_size": 4, "workers": 0, "quiet": True,
        "out": str(tmp_path / "runs"), "callbacks": [],
    }  # fmt: skip
    config = resolve_run_config(values, None, None)
    plan = Plan("auto", seconds=0.5)
    candidates = [
        {"name": "lr 3e-3", "settings": {"learning_rate": 3e-3}, "reason": "test"},
        {"name": "lr 1e-3", "settings": {"learning_rate": 1e-3}, "reason": "test"},
    ]
    plan.facts["race"] = {
        "share": 0.25,
        "seconds": 4.0,
        "schedule": auto.race_schedule(2, 4.0),
        "candidates": candidates,
    }
    config.plan = plan
    torch.set_num_threads(1)
    result = race_module.train(config, echo=lambda text: None)
    record = json.loads((result.run_dir / "plan.json").read_text())["facts"]["race"]
    scores = [c["rounds"][0]["score"] for c in record["candidates"]]
    assert record["winner"] == 1 + int(np.argmax(scores))
    (loser,) = (result.run_dir / "race").iterdir()
    assert (loser / "metrics.csv").exists() and not list(loser.glob("*.pt"))
    rows = (result.run_dir / "metrics.csv").read_text().splitlines()
    assert len(rows) - 1 > record["candidates"][record["winner"] - 1]["rounds"][0]["epochs"]  # it went on
    checkpoint = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert (
        checkpoint["config"]["learning_rate"] == candidates[record["winner"] - 1]["settings"]["learning_rate"]
    )
    sources = json.loads((result.run_dir / "config.json").read_text())["sources"]
    assert sources["learning_rate"] == f"plan auto, race candidate {record['winner']}"
