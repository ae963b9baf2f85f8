"""``segkit run`` learns: a tiny run on the generated data reaches a floor of validation Dice that no
trivial answer reaches. Every other run in the suite only checks what is written, not that training
works: a sign flipped in a loss, an optimizer that never steps, masks misaligned with their images or
a validation that scores the wrong thing would all pass them."""

from __future__ import annotations

import csv

from fixtures import only_run_dir, run_cli, tiny_run

import segkit

#: 96 generated images at 32x32, a UNet of width 8, five epochs: about 4 s on one CPU thread, and
#: a valid Dice of about 0.7 (0.71 with this seed on the machine that chose the floor).
LEARNING_RUN = tiny_run(
    train_size=96,
    valid_size=16,
    batch_size=8,
    epochs=5,
    learning_rate=0.01,
    base_channels=8,
    seed=0,
    callbacks=("csv",),
)
#: Well above any trivial answer (see the test) and with room for other CPUs' rounding.
DICE_FLOOR = 0.6


def test_a_tiny_run_learns(tmp_path):
    result = run_cli("run", *LEARNING_RUN, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((only_run_dir(tmp_path) / "metrics.csv").open()))
    dice = [float(row["valid_dice"]) for row in rows]
    losses = [float(row["train_loss"]) for row in rows]
    # Trivial answers on this validation split: all background scores 0, all foreground (objects
    # cover about 18% of each image) about 0.29.
    valid = segkit.create_dataset("synthetic", split="valid", image_size=32, augment="none", valid_size=16)
    fractions = [float(valid[index]["mask"].mean()) for index in range(len(valid))]
    all_foreground = sum(2 * p / (1 + p) for p in fractions) / len(fractions)
    assert all_foreground < DICE_FLOOR - 0.2
    assert max(dice) >= DICE_FLOOR, f"valid Dice per epoch {dice}: the run did not learn"
    assert dice[-1] >= DICE_FLOOR - 0.05, dice
    assert losses[-1] < 0.7 * losses[0], f"train loss per epoch {losses}"
