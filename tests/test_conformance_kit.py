"""segkit.testing, the conformance kit plugin authors rely on, fed broken components: it must reject
each with a message that says what is wrong and how to put it right. (The built-in components pass it
in test_models.py, test_losses.py and the dataset tests.)"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from segkit.testing import check_dataset, check_loss, check_model

# -- models -------------------------------------------------------------------------------------------


class SmallNet(nn.Module):
    """A working model: two same-size convolutions, logits out."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, out_channels, 1)
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class EndsInSigmoid(SmallNet):
    def forward(self, images):
        return torch.sigmoid(super().forward(images))


class EndsInSoftmax(SmallNet):
    def forward(self, images):
        return torch.softmax(super().forward(images), dim=1)


class Strided(SmallNet):
    """Halves the size: an encoder without its decoder."""

    def forward(self, images):
        return F.avg_pool2d(super().forward(images), 2)


class Unpadded(nn.Module):
    """A 3x3 convolution without padding: two pixels short in each direction."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3)

    def forward(self, images):
        return self.conv(images)


class DeadBranch(SmallNet):
    """A parameter the output never depends on: no gradient reaches it."""

    def __init__(self, in_channels: int = 3, out_channels: int = 1) -> None:
        super().__init__(in_channels, out_channels)
        self.unused = nn.Conv2d(in_channels, out_channels, 1)


def test_a_working_model_passes():
    check_model(SmallNet, in_channels=3, out_channels=2, sizes=((9, 13),))


@pytest.mark.parametrize(
    "factory, out_channels, message",
    [
        (EndsInSigmoid, 1, r"outputs all lie in \[0, 1\]: the model must return logits, not probabilities"),
        (EndsInSoftmax, 3, r"not probabilities .*drop the final sigmoid or softmax"),
        (Strided, 1, r"input \(2, 3, 97, 131\) gave output \(2, 1, 48, 65\), expected \(2, 1, 97, 131\)"),
        (Unpadded, 1, r"expected \(2, 1, 97, 131\).*any height and width.*AnySizeModel"),
        (DeadBranch, 1, r"no finite gradient reached parameters: \['unused.weight', 'unused.bias'\]"),
    ],
    ids=["sigmoid", "softmax", "strided", "unpadded", "dead-branch"],
)
def test_a_broken_model_is_rejected_with_the_reason(factory, out_channels, message):
    with pytest.raises(AssertionError, match=message):
        check_model(factory, out_channels=out_channels)


def test_a_model_that_returns_the_wrong_channel_count_is_rejected():
    with pytest.raises(AssertionError, match=r"gave output \(2, 1, 97, 131\), expected \(2, 3, 97, 131\)"):
        check_model(lambda in_channels, out_channels: SmallNet(in_channels, 1), out_channels=3)


# -- losses -------------------------------------------------------------------------------------------


def rewards_wrong_answers(logits, target, ignore=None):
    """BCE against the inverted target: lowest for the opposite of the truth."""
    return F.binary_cross_entropy_with_logits(logits, 1 - target)


def rewards_wrong_classes(logits, target, ignore=None):
    """Cross-entropy of the next class: lowest when every pixel is wrong."""
    classes = logits.shape[1]
    valid = target != 255
    shifted = torch.where(valid, (target + 1) % classes, target)
    return F.cross_entropy(logits, shifted, ignore_index=255)


def not_a_scalar(logits, target, ignore=None):
    return F.binary_cross_entropy_with_logits(logits, target, reduction="none")


def blind_to_ignore(logits, target, ignore=None):
    """Counts pixels marked 255 (ignore) as a class of their own, clamped into range."""
    return F.cross_entropy(logits, target.clamp(max=logits.shape[1] - 1))


@pytest.mark.parametrize(
    "loss, task, message",
    [
        (
            rewards_wrong_answers,
            "binary",
            r"a perfect prediction must score lower than the opposite one \(perfect \S+, opposite \S+,",
        ),
        (rewards_wrong_answers, "multilabel", r"a perfect prediction must score lower"),
        (rewards_wrong_classes, "multiclass", r"a perfect prediction must score lower than a wrong one"),
        (not_a_scalar, "binary", r"loss must return a scalar tensor, got shape \(2, 1, 16, 20\)"),
        (blind_to_ignore, "multiclass", r"ignored pixels \(255\) got a gradient"),
    ],
    ids=["rewards-wrong-binary", "rewards-wrong-multilabel", "rewards-wrong-class", "not-scalar", "ignore"],
)
def test_a_broken_loss_is_rejected_with_the_reason(loss, task, message):
    with pytest.raises(AssertionError, match=message):
        check_loss(lambda: loss, task=task)


def test_working_losses_pass():
    check_loss(lambda: lambda logits, target, ignore=None: F.binary_cross_entropy_with_logits(logits, target))
    check_loss(
        lambda: lambda logits, target, ignore=None: F.cross_entropy(logits, target, ignore_index=255),
        task="multiclass",
    )


# -- datasets -----------------------------------------------------------------------------------------


class Items:
    """A dataset of given items, with the attributes a task needs."""

    def __init__(self, items, task=None, class_names=None):
        self.items = items
        if task is not None:
            self.task = task
        if class_names is not None:
            self.class_names = class_names

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def item(mask: torch.Tensor, name: str = "cat_1") -> dict:
    return {"image": torch.zeros(3, *mask.shape[1:]), "mask": mask, "name": name}


def binary_mask(*values: float) -> torch.Tensor:
    mask = torch.zeros(1, 4, 4)
    mask.view(-1)[: len(values)] = torch.tensor(values)
    return mask


def class_ids(*values: int) -> torch.Tensor:
    mask = torch.zeros(1, 4, 4, dtype=torch.int64)
    mask.view(-1)[: len(values)] = torch.tensor(values)
    return mask


def test_working_datasets_pass():
    check_dataset(Items([item(binary_mask(1, 0, 1))]))
    check_dataset(Items([item(class_ids(0, 2, 255))], task="multiclass", class_names=["bg", "a", "b"]))


@pytest.mark.parametrize(
    "dataset, message",
    [
        (
            Items([item(binary_mask(0, 255, 255))]),
            r"mask of 'cat_1' has values \[0.0, 255.0\], not \{0, 1\}.*divide 0/255 masks by 255",
        ),
        (Items([item(binary_mask(0, 0.5, 1))]), r"mask of 'cat_1' has values \[0.0, 0.5, 1.0\]"),
        (
            Items([item(class_ids(0, 1, 3))], task="multiclass", class_names=["bg", "a", "b"]),
            r"mask of 'cat_1' has ids \[3\]: not in 0..2 \(the 3 class_names\) nor 255 \(ignore\)",
        ),
        (
            Items([item(class_ids(0, 254, 255))], task="multiclass", class_names=["bg", "a", "b"]),
            r"has ids \[254\]",
        ),
        (
            Items([item(class_ids(0, -1))], task="multiclass", class_names=["bg", "a", "b"]),
            r"has ids \[-1\]",
        ),
        (
            Items([item(binary_mask(1).long())]),
            r"a binary mask must be a float tensor, got torch.int64",
        ),
        (Items([item(binary_mask(1), name="")]), r"name must be a non-empty str"),
        (Items([]), r"dataset is empty"),
    ],
    ids=["0-255", "soft", "id-K", "id-254", "id-negative", "int-binary", "no-name", "empty"],
)
def test_a_broken_dataset_is_rejected_with_the_reason(dataset, message):
    with pytest.raises(AssertionError, match=message):
        check_dataset(dataset)
