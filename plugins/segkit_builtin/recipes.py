"""Built-in training recipes: named presets of settings for ``segkit run --recipe NAME``."""

import segkit

# The seed report's train.py, exactly: Adam 1e-3 at a constant rate, batch 32, 200 epochs, 256x256,
# the report's augmentation. These are also segkit's base defaults, so results stay comparable.
SEED_RECIPE = {
    "epochs": 200,
    "batch_size": 32,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "scheduler": "none",
    "warmup_fraction": 0.0,
    "image_size": 256,
    "augment": "default",
}


@segkit.hookimpl
def register_recipes(register):
    register(
        "seed",
        SEED_RECIPE,
        description="The seed report's recipe: Adam 1e-3 constant, batch 32, 200 epochs, 256px",
    )
