"""Config files and recipes (segkit.config.resolve): the layers of a run's settings under the flags.

- Files are read, layered and checked: unreadable TOML, unknown settings and values of the wrong
  type are usage errors naming the file and the setting (one ``Error:`` line through the CLI), also
  for random TOML documents and random bytes (hypothesis); flags override the file.
- Recipes sit between the dataset's defaults and the config file.
- Names in a config file or in a run folder's config.json are looked up in the plugin registries
  only: a module path there is an unknown name, and the module is never imported.

(The settings table itself, segkit.config.settings, is tested in test_settings.py.)
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from fixtures import EVIL_MODULE, QUICK, error_line, invoke, only_run_dir, option_names, run_cli, tiny_run
from hypothesis import given
from hypothesis import strategies as st

import segkit
from segkit.config.resolve import ResolvedConfig, read_config_file, resolve_run_config, validate
from segkit.config.settings import DEFAULTS
from segkit.errors import UsageError

#: ``segkit run`` as test_cli_run.py runs it.
TINY = tiny_run(loss="bce_dice", batch_size=8, train_size=32, valid_size=16)


# -- reading, layering and checking ----------------------------------------------------------------


def test_config_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(UsageError, match="missing.toml"):
        read_config_file(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = = 3")
    with pytest.raises(UsageError, match="broken.toml"):
        read_config_file(broken)


@given(st.binary(max_size=60))
def test_fuzzed_config_files_load_or_fail_clearly(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("cfg") / "run.toml"
    path.write_bytes(content)
    try:
        data = read_config_file(path)
    except UsageError as error:
        assert "run.toml" in str(error)
        return
    config = ResolvedConfig()
    config.apply(DEFAULTS, "default")
    try:
        config.apply(data, "config")
        validate(config)
    except UsageError:
        pass


def test_layers_override_in_order_and_remember_sources():
    config = ResolvedConfig()
    config.apply(DEFAULTS, "default")
    config.apply({"epochs": 5, "model_options": {"base_channels": 16}}, "dataset")
    config.apply({"epochs": 7, "model_options": {"depth": 3}}, "flag")
    assert config["epochs"] == 7 and config.sources["epochs"] == "flag"
    assert config["model_options"] == {"base_channels": 16, "depth": 3}
    assert config["batch_size"] == 32 and config.sources["batch_size"] == "default"


def test_unknown_setting_names_its_source():
    config = ResolvedConfig()
    with pytest.raises(UsageError, match="epoch.*run.toml"):
        config.apply({"epoch": 3}, "config run.toml")


@pytest.mark.parametrize(
    "key, value",
    [
        ("epochs", 0),
        ("batch_size", -1),
        ("image_size", 2.5),
        ("threshold", 1.0),
        ("optimizer", "adamx"),
        ("learning_rate", 0),
        ("workers", -1),
        ("ema_decay", 1.0),
        ("ema_decay", "0.9"),
        ("progressive_sizes", [96, 0]),
        ("progressive_sizes", 128),
        ("tta", "yes"),
        ("calibrate_threshold", 1),
        ("fill_holes", None),
    ],
)
def test_invalid_values_name_the_flag(key, value):
    config = ResolvedConfig()
    config.apply(DEFAULTS, "default")
    config.apply({key: value}, "flag")
    with pytest.raises(UsageError, match=f"--{key.replace('_', '-')}"):
        validate(config)


# -- config files, fuzzed ---------------------------------------------------------------------------


def toml_value(value) -> str:
    """A TOML literal for the values generated below (TOML has no null: None is never generated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value == math.inf else "-inf" if value == -math.inf else repr(value))
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return (
            '"'
            + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value)
            + '"'
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def toml_document(settings_: dict, tables: dict) -> str:
    lines = [f"{key} = {toml_value(value)}" for key, value in settings_.items()]
    for table, entries in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


scalars = st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=12))
toml_values = st.one_of(scalars, st.lists(scalars, max_size=3))

#: Settings whose values ``validate`` checks today; values of any type must be accepted or refused there.
VALIDATED = [
    "epochs",
    "batch_size",
    "image_size",
    "learning_rate",
    "threshold",
    "workers",
    "optimizer",
    "scheduler",
    "amp",
    "on_nan",
]
#: Plausible values for the other settings, so that documents often pass validation too.
PLAUSIBLE = {
    "model": st.sampled_from(["unet", "resnet34_unet", "unet2", "os.system"]),
    "loss": st.sampled_from(["bce_dice", "bce_tversky", "focal", "bce-dice"]),
    "dataset": st.sampled_from(["synthetic", "folder", "oxford_pet", "imagenet"]),
    "augment": st.sampled_from(["none", "default", "strong"]),
    "seed": st.integers(0, 2**31),
    "time_budget": st.sampled_from(["90s", "15m", "1.5h", 30, 0.5, "soon", "-1m", ""]),
    "callbacks": st.lists(st.sampled_from(["csv", "excel", "early_stopping", "cvs"]), max_size=2),
}


@QUICK
@given(
    validated=st.dictionaries(st.sampled_from(VALIDATED), toml_values, max_size=4),
    plausible=st.fixed_dictionaries({}, optional=PLAUSIBLE),
    unknown=st.one_of(
        st.just({}), st.just({}), st.dictionaries(option_names, scalars, min_size=1, max_size=1)
    ),
    tables=st.dictionaries(
        st.sampled_from(["model_options", "loss_options", "dataset_options"]),
        st.dictionaries(option_names, scalars, max_size=2),
        max_size=2,
    ),
)
def test_config_files_resolve_or_are_refused_with_a_usage_error(
    tmp_path_factory, validated, plausible, unknown, tables
):
    document = {**validated, **plausible, **unknown}
    path = tmp_path_factory.mktemp("config") / "run.toml"
    path.write_text(toml_document(document, tables), encoding="utf-8")
    try:
        config = resolve_run_config({}, path, None)
    except UsageError as error:
        assert str(error)
        return
    assert set(config.values) == set(DEFAULTS)
    assert all(key in DEFAULTS for key in document)
    for key in ("epochs", "batch_size", "image_size"):
        assert isinstance(config[key], int) and config[key] >= 1
    assert 0 < config["threshold"] < 1 and config["learning_rate"] > 0


@QUICK
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "replace")),
        st.sampled_from(
            [
                b"[model_options",
                b"epochs = ",
                b"\xff\xfe",
                b"a = 1\na = 2\n",
                b"model_options = 3\n",
                b"[model_options]\n[model_options]\n",
            ]
        ),
    )
)
def test_config_files_of_arbitrary_bytes_are_refused_or_read(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("config") / "run.toml"
    path.write_bytes(data)
    try:
        resolve_run_config({}, path, None)
    except UsageError as error:
        message = str(error)
        assert str(path) in message or "unknown setting" in message or "unknown" in message.lower(), message


def test_config_file_errors_reach_the_user_as_one_line(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes(b"epochs = [1,\n")
    result = invoke("run", "--config", path, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert re.match(
        rf"Error: config file {re.escape(str(path))} is not valid TOML", result.output.splitlines()[-1]
    )


# -- settings of the wrong type in a config file: the cases fuzzing found ------------------------------

WRONG_TYPES = [
    pytest.param('seed = "x"', "seed", id="seed-a-string"),
    pytest.param('weight_decay = "x"', "weight_decay", id="weight-decay-a-string"),
    pytest.param("weight_decay = -1", "weight_decay", id="weight-decay-negative"),
    pytest.param('warmup_fraction = "x"', "warmup_fraction", id="warmup-a-string"),
    pytest.param("time_budget = [1]", "time_budget", id="time-budget-a-list"),
    pytest.param("model = 5", "model", id="model-a-number"),
    pytest.param('loss = ["bce"]', "loss", id="loss-a-list"),
    pytest.param("dataset = 3", "dataset", id="dataset-a-number"),
    pytest.param("recipe = 5", "recipe", id="recipe-a-number"),
    pytest.param("[callback_options]\ncsv = 5", "csv", id="callback-options-not-tables"),
    pytest.param("amp = 5", "amp", id="amp-a-number"),
    pytest.param("on_nan = 1", "on-nan", id="on-nan-a-number"),
    pytest.param("threshold = nan", "threshold", id="threshold-nan"),
    pytest.param("learning_rate = nan", "learning-rate", id="learning-rate-nan"),
    pytest.param("model_options = 5", "model_options", id="model-options-not-a-table"),
    pytest.param('[model_options]\nbase_channels = "x"', "base_channels", id="width-a-string"),
    pytest.param(
        "[model_options]\nbase_channels = 1_000_000_000_000", "base_channels", id="width-beyond-any-memory"
    ),
]


@pytest.mark.parametrize("line, named", WRONG_TYPES)
def test_a_setting_of_the_wrong_type_is_a_usage_error_naming_it(tmp_path, line, named):
    path = tmp_path / "run.toml"
    tiny_model = "" if "model_options" in line else "\n[model_options]\nbase_channels = 4"
    path.write_text(line + tiny_model + "\n")
    args = tiny_run(model=None, epochs=1, batch_size=2, train_size=2, valid_size=2, callbacks=("csv",))
    result = invoke("run", "--config", path, *args, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    (error,) = [text for text in result.output.splitlines() if text.startswith("Error:")]
    assert named in error, error


# -- flags over the file, recipes under it -----------------------------------------------------------


def test_config_file_is_overridden_by_flags(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("epochs = 1\nlearning_rate = 0.01\n[model_options]\nbase_channels = 4\n")
    result = run_cli(
        "run", *TINY, "--config", str(config), "--learning-rate", "0.002", "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((only_run_dir(tmp_path / "o") / "config.json").read_text())
    assert recorded["config"]["epochs"] == 1 and recorded["sources"]["epochs"].startswith("config")
    assert recorded["config"]["learning_rate"] == 0.002 and recorded["sources"]["learning_rate"] == "flag"


def test_a_named_recipe_beats_dataset_defaults_and_loses_to_flags():
    from segkit.config.resolve import resolve_run_config

    config = resolve_run_config({"epochs": 3}, None, "seed")
    assert config["image_size"] == 256 and config.sources["image_size"] == "recipe seed"
    assert config["batch_size"] == 32 and config.sources["batch_size"] == "recipe seed"
    assert config["epochs"] == 3 and config.sources["epochs"] == "flag"
    plain = resolve_run_config({}, None, None)
    assert plain["image_size"] == 64 and plain.sources["image_size"] == "dataset synthetic default"


def test_every_registered_recipe_resolves_to_valid_settings():
    """A recipe is checked like a config file: known settings, valid values (third-party ones too)."""
    from segkit.config.resolve import resolve_run_config

    names = [component.name for component in segkit.list_components("recipe")]
    assert {"seed", "budget"} <= set(names)
    for name in names:
        config = resolve_run_config({"dataset": "oxford_pet"}, None, name)
        recipe = segkit.get_component("recipe", name).factory
        assert all(config.sources[key] == f"recipe {name}" for key in recipe), name


def test_the_budget_recipe_plans_for_fifteen_minutes_unless_told_otherwise():
    from segkit.config.resolve import resolve_run_config

    config = resolve_run_config({}, None, "budget")
    assert config["time_budget"] == 900 and config.sources["time_budget"] == "recipe budget"
    assert config["progressive_sizes"][-1] == config["image_size"]
    assert resolve_run_config({"time_budget": "1h"}, None, "budget")["time_budget"] == 3600
    # seed stays the report's recipe: none of the budget's levers
    seed = resolve_run_config({}, None, "seed")
    assert seed["time_budget"] is None and seed["progressive_sizes"] == [] and not seed["tta"]


# -- names are looked up, never imported ------------------------------------------------------------------


CONFIG_FILES = {
    "model-as-module-path": (f'model = "{EVIL_MODULE}"\n', rf"unknown model '{EVIL_MODULE}'"),
    "model-as-entry-point": (f'model = "{EVIL_MODULE}:build"\n', rf"unknown model '{EVIL_MODULE}:build'"),
    "model-as-os-system": ('model = "os.system"\n', r"unknown model 'os\.system'"),
    "loss-as-dotted-path": (f'loss = "{EVIL_MODULE}.build"\n', rf"unknown loss '{EVIL_MODULE}\.build'"),
    "dataset-as-module": (f'dataset = "{EVIL_MODULE}"\n', rf"unknown dataset '{EVIL_MODULE}'"),
    "callback-as-module": (f'callbacks = ["{EVIL_MODULE}"]\n', rf"unknown callback '{EVIL_MODULE}'"),
    "recipe-as-module": (f'recipe = "{EVIL_MODULE}"\n', rf"unknown recipe '{EVIL_MODULE}'"),
    "a-plugins-setting": (f'plugins = ["{EVIL_MODULE}"]\n', r"unknown setting 'plugins' from config"),
    "an-import-setting": (f'import = "{EVIL_MODULE}"\n', r"unknown setting 'import' from config"),
    "factory-in-model-options": (
        f'[model_options]\nfactory = "{EVIL_MODULE}:build"\n',
        r"model 'unet' has no option 'factory'",
    ),
}


@pytest.mark.parametrize("config", list(CONFIG_FILES))
def test_names_in_a_config_file_are_never_imported(tmp_path, evil_module, config):
    text, message = CONFIG_FILES[config]
    path = tmp_path / "run.toml"
    path.write_text(text)
    args = tiny_run(model=None, epochs=1, train_size=4, valid_size=2)
    result = invoke("run", "--config", path, *args, "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert re.search(message, error_line(result), flags=re.IGNORECASE), result.output


@pytest.mark.parametrize("key", ["model", "loss", "dataset"])
def test_names_in_a_run_folders_config_are_never_imported(copy_of_run, evil_module, key):
    config_path = copy_of_run / "config.json"
    recorded = json.loads(config_path.read_text())
    recorded["config"][key] = f"{EVIL_MODULE}:build"
    config_path.write_text(json.dumps(recorded))
    result = invoke("run", "--resume", copy_of_run)
    assert result.exit_code == 2, result.output
    assert f"unknown {key} '{EVIL_MODULE}:build'" in error_line(result).lower()


# -- what a newcomer writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, suggestion",
    [
        ("lr = 0.01", "Did you mean 'learning_rate'?"),
        ("callback = ['early_stopping']", "Did you mean 'callbacks'?"),
        ("epoch = 3", "Did you mean 'epochs'?"),
        ("[model_option]\nbase_channels = 8", "Did you mean 'model_options'?"),
    ],
)
def test_a_mistaken_key_gets_a_did_you_mean_naming_the_file(tmp_path, line, suggestion):
    path = tmp_path / "run.toml"
    path.write_text(line + "\n")
    result = invoke("run", "--config", path, "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert suggestion in error_line(result) and str(path) in error_line(result)


@pytest.mark.parametrize(
    "line, hint",
    [
        ('epochs = "10"', "write epochs = 10, without quotes"),
        ('learning_rate = "1e-3"', "write learning_rate = 0.001, without quotes"),
        ('tta = "true"', "write tta = true, without quotes"),
    ],
)
def test_a_string_where_a_number_belongs_says_so(tmp_path, line, hint):
    path = tmp_path / "run.toml"
    path.write_text(line + "\n")
    with pytest.raises(UsageError, match=re.escape(hint)):
        resolve_run_config({}, path, None)


@pytest.mark.parametrize("key", ["image_size", "root", "split", "augment"])
def test_engine_owned_dataset_options_are_refused_in_a_file_too(tmp_path, key):
    path = tmp_path / "run.toml"
    path.write_text(f'[dataset_options]\n{key} = "x"\n')
    with pytest.raises(UsageError, match=rf"^dataset_options\.{key} from config {re.escape(str(path))}: "):
        resolve_run_config({}, path, None)


def test_the_readme_run_toml_is_complete_and_resolves(tmp_path):
    """The README's own-data section shows a run.toml; it must be a valid config for the folder dataset."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Training on your own images", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    path = tmp_path / "run.toml"
    path.write_text(block)
    config = resolve_run_config({}, path, None)
    written = set(read_config_file(path))
    assert config["dataset"] == "folder" and {"model", "loss", "data_path", "epochs", "image_size"} <= written
    assert all(config.sources[key] == f"config {path}" for key in written)
    for needed in ("images/", "masks/", "valid_fraction", "pretrained=true", "--split valid", "HD95"):
        assert needed in section, needed


# -- tiles and crops together -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, accepted",
    [
        ({"crop_size": 16, "tile": 16}, True),  # a tile of the crop's size: the view it trained on
        ({"crop_size": 16, "tile": 40}, True),
        ({"crop_size": 16}, True),  # no tile: twice the crop
        ({}, True),
        ({"crop_size": 16, "tile": 15}, False),  # (the smallest side a setting takes is 8)
        ({"crop_size": 64, "tile": 8}, False),
        ({"tile": 64}, False),  # tiles at native resolution for a run that trains on resized photos
    ],
)
def test_a_tile_needs_crops_no_larger_than_it_in_a_file_or_flags(tmp_path, settings, accepted):
    path = tmp_path / "run.toml"
    path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
    for flags, file in (({}, path), (settings, None)):
        if accepted:
            config = resolve_run_config(flags, file, None)
            assert (config["tile"], config["crop_size"]) == (settings.get("tile"), settings.get("crop_size"))
            continue
        with pytest.raises(UsageError) as refused:
            resolve_run_config(flags, file, None)
        message = str(refused.value)
        assert "\n" not in message and "tile" in message
        crop = "--crop-size" if file is None else f"crop_size (--crop-size) from config {path}"
        assert ("needs --crop-size" if "crop_size" not in settings else f"is smaller than {crop}") in message
        if file is not None:
            assert f"tile (--tile) from config {path}" in message  # where the value came from


def test_a_tile_in_a_file_with_crops_from_the_flags_is_checked_across_layers(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("tile = 24\n")
    assert resolve_run_config({"crop_size": 24}, path, None)["tile"] == 24
    with pytest.raises(UsageError, match=r"tile \(--tile\) from config .* 24 is smaller than --crop-size 32"):
        resolve_run_config({"crop_size": 32}, path, None)


def test_settings_resolution_alone_refuses_a_planner_and_the_planning_layer_plans_it(monkeypatch):
    """segkit.config knows no planner (the layers): a planner named there is a usage error; the
    planning layer's resolve_planned_config passes its make_plan in and gets the plan back."""
    import segkit.planning as planning

    with pytest.raises(UsageError, match="is a planner: resolve with segkit.planning.resolve_planned_config"):
        resolve_run_config({}, None, "auto")
    made = []

    class Plan:
        settings = {"epochs": 7}

    monkeypatch.setattr(planning, "make_plan", lambda name, values, chosen: made.append(name) or Plan())
    config = planning.resolve_planned_config({}, None, "auto")
    assert made == ["auto"] and config["epochs"] == 7 and config.sources["epochs"] == "plan auto"
