"""Built-in training recipes: named presets of settings for ``segkit run --recipe NAME``."""

import segkit
from segkit.config import REPORT_DEFAULTS

# The seed report's train.py, exactly: Adam 1e-3 at a constant rate, batch 32, 200 epochs, 256x256,
# the report's augmentation. These are segkit's base defaults too, so the recipe is read from them:
# naming it explicitly makes them win over a dataset's own defaults.
SEED_RECIPE = {
    key: REPORT_DEFAULTS[key]
    for key in (
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "optimizer",
        "scheduler",
        "warmup_fraction",
        "image_size",
        "augment",
        "ema_decay",
        "calibrate_threshold",
        "tta",
        "fill_holes",
        "keep_largest",
    )
}


@segkit.hookimpl
def register_recipes(register):
    register(
        "seed",
        SEED_RECIPE,
        description="The seed report's recipe: Adam 1e-3 constant, batch 32, 200 epochs, 256px",
    )
