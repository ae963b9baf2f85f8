"""``segkit run --init-from`` (segkit.models.init_weights) and ``--freeze-encoder``
(segkit.engine.freezing)."""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import QUICK, InterruptPlugin, error_line, invoke, only_run_dir, run_cli, tiny_run
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch import nn

import segkit
from segkit.checkpoint_files import load_checkpoint
from segkit.engine.freezing import EncoderFreeze
from segkit.errors import CheckpointError, UsageError
from segkit.models import PadToMultiple
from segkit.models.init_weights import init_from_file, read_state_dict


def three_class_folder(root: Path, count: int = 10) -> Path:
    """A tiny multi-class folder dataset: background, circle and square (classes.txt), 40x44 photos."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncircle\nsquare\n")
    rng = np.random.default_rng(0)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (40, 44, 3), dtype=np.uint8)).save(
            root / "images" / f"p{index}.png"
        )
        mask = np.zeros((40, 44), np.uint8)
        mask[5:20, 5:20] = 1
        mask[25:35, 20:40] = 2
        Image.fromarray(mask).save(root / "masks" / f"p{index}.png")
    return root


def test_a_binary_checkpoint_starts_a_three_class_run(tiny_checkpoint, tmp_path):
    data = three_class_folder(tmp_path / "data")
    args = tiny_run(dataset="folder", data_path=data, loss="ce_dice", epochs=1, batch_size=4, quiet=False)
    result = invoke(
        "run", *args, "--init-from", tiny_checkpoint, "--freeze-encoder", "1", "--out", tmp_path / "o"
    )
    assert result.exit_code == 0, result.output
    source = load_checkpoint(tiny_checkpoint)["model_state"]
    total = len(source)
    assert f"loaded {total - 2} of {total} tensors" in result.output
    assert "head.weight (shape (1, 4, 1, 1) in the file, (3, 4, 1, 1) here)" in result.output
    assert "head.bias (shape (1,) in the file, (3,) here)" in result.output
    assert "Encoder frozen" in result.output
    run = only_run_dir(tmp_path / "o")
    config = json.loads((run / "config.json").read_text())["config"]
    assert config["init_from"] == str(tiny_checkpoint.resolve()) and config["freeze_encoder"] == 1
    trained = load_checkpoint(run / "last.pt")["model_state"]
    assert trained["head.weight"].shape == (3, 4, 1, 1)
    encoder = [name for name in source if name.startswith("encoder.")]
    assert encoder and all(torch.equal(trained[name], source[name]) for name in encoder)  # frozen throughout
    decoder = [name for name in source if name.startswith("decoder.") and name.endswith("weight")]
    assert any(not torch.equal(trained[name], source[name]) for name in decoder)


def test_resume_continues_from_last_pt_not_from_the_init_file(tiny_checkpoint, tmp_path):
    start = tmp_path / "start.pt"
    start.write_bytes(tiny_checkpoint.read_bytes())
    args = tiny_run(train_size=4, valid_size=2, batch_size=4, epochs=1, callbacks=("csv",))
    assert invoke("run", *args, "--init-from", start, "--out", tmp_path / "o").exit_code == 0
    run = only_run_dir(tmp_path / "o")
    changed = invoke("run", "--resume", run, "--init-from", tiny_checkpoint)
    assert changed.exit_code == 2 and "--init-from" in error_line(changed)
    start.unlink()  # the file is read once, at the start
    resumed = invoke("run", "--resume", run, "--epochs", "2", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(run / "last.pt")["epoch"] == 2


def test_none_fits_is_one_error_line_and_leaves_no_run_folder(tmp_path):
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"fc.weight": torch.zeros(10, 7), "fc.bias": torch.zeros(10)}, unrelated)
    result = invoke(
        "run", *tiny_run(train_size=4, valid_size=2), "--init-from", unrelated, "--out", tmp_path / "o"
    )
    assert result.exit_code == 1
    line = error_line(result)
    assert "none of its 2 tensors fits the model" in line and str(unrelated) in line
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_file_holding_objects_is_refused_without_running_them(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("unpickled!",))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"weight": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="refused|not a readable"):
        read_state_dict(evil)
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "missing.pt")


def small_model(out_channels: int = 1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, out_channels, 1))


def test_a_plain_state_dict_loads_whole(tmp_path):
    torch.manual_seed(0)
    source = small_model()
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    target = small_model()
    report = init_from_file(target, tmp_path / "weights.pt")
    assert len(report.loaded) == report.total == len(source.state_dict()) and not report.skipped
    for name, tensor in source.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor)


@pytest.mark.parametrize("wrap_file, wrap_model", [(True, False), (False, True)])
def test_names_are_aligned_across_a_wrappers_prefix(tmp_path, wrap_file, wrap_model):
    """``module.`` (DistributedDataParallel) in the file, ``network.`` (PadToMultiple) in the model."""
    torch.manual_seed(1)
    source = small_model()
    state = source.state_dict()
    if wrap_file:
        state = {f"module.{name}": tensor for name, tensor in state.items()}
    torch.save({"state_dict": state}, tmp_path / "weights.pt")
    target: nn.Module = small_model()
    if wrap_model:
        target = PadToMultiple(target, 3, 1, size_multiple=4)
    report = init_from_file(target, tmp_path / "weights.pt")
    assert len(report.loaded) == len(state)
    prefix = "network." if wrap_model else ""
    assert torch.equal(target.state_dict()[f"{prefix}0.weight"], source.state_dict()["0.weight"])


@QUICK
@given(
    changed=st.lists(st.booleans(), min_size=9, max_size=9),
    dropped=st.lists(st.booleans(), min_size=9, max_size=9),
)
def test_exactly_the_tensors_of_equal_name_and_shape_are_loaded(tmp_path, changed, dropped):
    """Against a plain reference: a tensor is loaded iff the file has its name with its shape."""
    torch.manual_seed(2)
    source_state = small_model().state_dict()
    file_state = {}
    for (name, tensor), change, drop in zip(source_state.items(), changed, dropped, strict=True):
        if drop:
            continue
        file_state[name] = (
            torch.randn(tensor.numel() + 1) if change else torch.randn_like(tensor.float()).to(tensor.dtype)
        )
    path = tmp_path / "weights.pt"
    torch.save(file_state, path)
    target = small_model()
    before = {name: tensor.clone() for name, tensor in target.state_dict().items()}
    expected = {
        name
        for name, tensor in before.items()
        if name in file_state and file_state[name].shape == tensor.shape
    }
    if not file_state:
        with pytest.raises(CheckpointError, match="holds no tensors"):
            init_from_file(target, path)
        return
    if not expected:
        with pytest.raises(CheckpointError, match="none of its"):
            init_from_file(target, path)
        return
    report = init_from_file(target, path)
    assert set(report.loaded) == expected
    assert {name for name, _ in report.skipped} == set(before) - expected
    for name, tensor in target.state_dict().items():
        assert torch.equal(tensor, file_state[name] if name in expected else before[name])


class WithEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1))
        self.head = nn.Conv2d(4, 1, 1)
        self.encoder[2].bias.requires_grad_(False)  # frozen for its own reasons: stays so


def test_the_encoder_is_frozen_for_the_first_fraction_of_the_run():
    model = WithEncoder().train()
    freeze = EncoderFreeze(model, 0.3, "with_encoder")
    for progress, frozen in [(0.0, True), (0.29, True), (0.3, False), (0.9, False), (0.1, True)]:
        model.train()
        freeze.update(progress)
        trainable = [p.requires_grad for p in model.encoder.parameters()]
        assert trainable == [not frozen, not frozen, not frozen, not frozen, not frozen, False]
        assert model.encoder[1].training is not frozen  # BatchNorm statistics fixed while frozen
        assert all(p.requires_grad for p in model.head.parameters()) and model.head.training


def test_under_a_time_budget_the_fraction_is_of_the_budget(monkeypatch):
    from segkit.engine.budget import RunClock

    now = [1000.0]
    monkeypatch.setattr("segkit.engine.budget.time.monotonic", lambda: now[0])
    clock = RunClock(total_steps=10_000, budget_s=100.0)
    freeze = EncoderFreeze(WithEncoder(), 0.5, "with_encoder")
    freeze.update(clock.progress(1))
    assert freeze.frozen
    now[0] += 49
    freeze.update(clock.progress(2))
    assert freeze.frozen
    now[0] += 2  # 51% of the budget spent, 0.02% of the planned steps
    freeze.update(clock.progress(3))
    assert not freeze.frozen


def test_freezing_a_model_without_an_encoder_is_a_usage_error():
    with pytest.raises(UsageError, match="has no `encoder` module attribute"):
        EncoderFreeze(small_model(), 0.5, "small")


class NoEncoderPlugin:
    @segkit.hookimpl
    def register_models(self, register):
        register(
            "no_encoder_net", lambda in_channels=3, out_channels=1: nn.Conv2d(in_channels, out_channels, 1)
        )


def test_freeze_encoder_with_a_model_without_one_is_refused_in_a_run(tmp_path):
    from segkit.plugins import get_host

    host = get_host()
    host.register_plugin(NoEncoderPlugin(), "no-encoder-test", "tests")
    try:
        args = tiny_run(model=None, train_size=4, valid_size=2)
        result = invoke(
            "run", *args, "--model", "no_encoder_net", "--freeze-encoder", "0.5", "--out", tmp_path / "o"
        )
    finally:
        host.unregister_plugin("no-encoder-test")
    assert result.exit_code == 2
    assert "no_encoder_net" in error_line(result) and "--freeze-encoder" in error_line(result)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("value", ["-0.1", "1.5", "abc"])
def test_freeze_encoder_must_be_a_fraction(tmp_path, value):
    result = invoke("run", *tiny_run(), "--freeze-encoder", value, "--out", tmp_path)
    assert result.exit_code == 2


#: Columns that time the run, not what it learned.
TIMING_COLUMNS = ("epoch_time_s", "train_images_per_s")


def test_a_frozen_run_resumed_after_ctrl_c_equals_the_uninterrupted_one(tiny_checkpoint, tmp_path):
    """--init-from and --freeze-encoder 0.6 over 4 epochs of 2 steps: the encoder is frozen for steps
    1-5, so the run resumed after epoch 2 must freeze again for its first step and then let go, as
    the uninterrupted run did; same weights, same metrics.csv but for the timing columns."""
    from segkit.plugins import get_host

    args = [
        *tiny_run(train_size=8, valid_size=4, batch_size=4, epochs=4, seed=3, callbacks=("csv",)),
        *("--init-from", str(tiny_checkpoint), "--freeze-encoder", "0.6"),
    ]
    assert invoke("run", *args, "--out", tmp_path / "straight").exit_code == 0
    host = get_host()
    host.register_plugin(InterruptPlugin(), "interrupt-test", "tests")
    try:
        result = run_cli("run", *args, "--callback", "interrupt_after_2", "--out", tmp_path / "interrupted")
    finally:
        host.unregister_plugin("interrupt-test")
    assert result.exit_code != 0 and "--resume" in result.output
    run = only_run_dir(tmp_path / "interrupted")
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    resumed = invoke("run", "--resume", run, "--callback", "csv", "--quiet")  # callbacks replaced
    assert resumed.exit_code == 0, resumed.output

    straight = only_run_dir(tmp_path / "straight")
    expected = list(csv.DictReader((straight / "metrics.csv").open()))
    found = list(csv.DictReader((run / "metrics.csv").open()))
    assert [row["epoch"] for row in found] == ["1", "2", "3", "4"]
    for wanted, got in zip(expected, found, strict=True):
        for key in set(wanted) - set(TIMING_COLUMNS):
            assert float(got[key]) == pytest.approx(float(wanted[key]), rel=1e-5, abs=1e-7), key
    straight_state = load_checkpoint(straight / "last.pt")["model_state"]
    resumed_state = load_checkpoint(run / "last.pt")["model_state"]
    source = load_checkpoint(tiny_checkpoint)["model_state"]
    for name, tensor in straight_state.items():
        assert torch.allclose(resumed_state[name].float(), tensor.float(), atol=1e-6), name
    encoder = [name for name in source if name.startswith("encoder.") and name.endswith("weight")]
    assert any(not torch.equal(straight_state[name], source[name]) for name in encoder)  # let go at 60%
