"""Built-in training recipes: named presets of settings for ``segkit run --recipe NAME``.

- ``seed``: the seed report's recipe exactly (Adam 1e-3 constant, batch 32, 200 epochs, 256x256).
- ``budget``: the most validation Dice out of a fixed wall-clock budget on a small CPU, 15 minutes
  unless ``--time-budget`` says otherwise. Tuned on the train/valid split of the Oxford-IIIT Pet
  sample with resnet34_unet on a 2-core CPU; the measurements behind each choice are in the README.

A recipe is a plain dict of settings; its keys and values are checked against ``segkit.config.settings``
when a run resolves it, like a config file's.
"""

import segkit
from segkit.config.settings import DEFAULTS

# These are segkit's base defaults too, so the recipe is read from them: naming it explicitly makes
# them win over a dataset's own defaults.
SEED_RECIPE = {
    key: DEFAULTS[key]
    for key in (
        "epochs",
        "batch_size",
        "accumulate_steps",
        "learning_rate",
        "weight_decay",
        "optimizer",
        "scheduler",
        "warmup_fraction",
        "image_size",
        "progressive_sizes",
        "augment",
        "ema_decay",
        "calibrate_threshold",
        "tta",
        "fill_holes",
        "keep_largest",
    )
}

BUDGET_RECIPE = {
    # The budget, not the epoch count, ends the run; every schedule below is planned against it.
    "time_budget": "15m",
    "epochs": 200,
    # Many small fast steps: batch 16 at 128x128 takes about a fifth of a 256x256 batch-32 step's
    # time per image, and training starts at 64x64 and 96x96 (progressive resizing, a third of the
    # budget each) before finishing at 128x128, the size validation and prediction use.
    "batch_size": 16,
    "image_size": 128,
    "progressive_sizes": [64, 96, 128],
    # AdamW at twice the seed's peak rate, warmed up over the first 5% and annealed on a cosine to 1%.
    "optimizer": "adamw",
    "learning_rate": 2e-3,
    "weight_decay": 1e-4,
    "scheduler": "cosine",
    "warmup_fraction": 0.05,
    "augment": "default",
    "ema_decay": 0.0,  # measured: no gain within the noise of a 30-image validation split
    # Inference: threshold picked on the validation split (0.3-0.7), flip TTA, holes filled and the
    # largest component kept; small gains, measured on the same split.
    "calibrate_threshold": True,
    "tta": True,
    "fill_holes": True,
    "keep_largest": True,
}


@segkit.hookimpl
def register_recipes(register):
    register(
        "seed",
        SEED_RECIPE,
        description="The seed report's recipe: Adam 1e-3 constant, batch 32, 200 epochs, 256px",
    )
    register(
        "budget",
        BUDGET_RECIPE,
        description="Most Dice from a fixed time (default 15m): AdamW 2e-3 cosine, batch 16, "
        "64->96->128px, calibrated threshold, flip TTA, clean-up",
    )
