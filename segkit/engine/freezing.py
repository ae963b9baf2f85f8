"""Freezing the encoder for the first part of a run (``segkit run --freeze-encoder F``).

A model says which part is its encoder with an ``encoder`` attribute (an ``nn.Module``; see the model
contract in ``segkit.hookspecs``). While the run's progress (``segkit.engine.budget.RunClock.progress``:
the fraction of planned steps done or, under ``--time-budget``, of the budget spent, whichever is
further) is below F, the encoder's parameters take no gradient, so the optimizer leaves them as they
are, and its BatchNorm layers use their running statistics without updating them (eval mode). Then
the encoder trains with the rest. The state follows from the progress alone, so a resumed run
freezes exactly as the uninterrupted one would have.

The usual use: a pretrained encoder (``pretrained=true`` or ``--init-from``) and a new decoder or head,
which first learns on the fixed features instead of sending large random gradients into them.
"""

from __future__ import annotations

from torch import nn

from segkit.errors import UsageError


def model_encoder(model: nn.Module, model_name: str) -> nn.Module:
    """The model's ``encoder`` attribute, or a ``UsageError`` saying the model has none."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise UsageError(
            f"--freeze-encoder: model {model_name!r} does not say which part is its encoder (it has no "
            "`encoder` module attribute); use a model that has one (resnet34_unet, the smp_* models of "
            "segkit-smp) or leave --freeze-encoder out"
        )
    return encoder


class EncoderFreeze:
    """``EncoderFreeze(model, fraction, model_name)``; call ``update(progress)`` before each optimizer
    step. Parameters frozen for other reasons (``requires_grad`` already False) stay frozen."""

    def __init__(self, model: nn.Module, fraction: float, model_name: str, distributed: bool = False) -> None:
        if distributed:  # DDP's gradient reduction expects the parameters it was built with to train
            raise UsageError("--freeze-encoder is not supported with several processes (torchrun) yet")
        self.encoder = model_encoder(model, model_name)
        self.fraction = fraction
        self.parameters = [parameter for parameter in self.encoder.parameters() if parameter.requires_grad]
        self.frozen = False

    def describe(self) -> str:
        count = sum(parameter.numel() for parameter in self.parameters)
        return (
            f"Encoder frozen ({count:,} parameters, BatchNorm statistics fixed) for the first "
            f"{self.fraction:.0%} of the run"
        )

    def update(self, progress: float) -> None:
        """Freeze or unfreeze for the run's ``progress`` (0 at the start, 1 at the planned end)."""
        frozen = progress < self.fraction
        if frozen != self.frozen:
            for parameter in self.parameters:
                parameter.requires_grad_(not frozen)
                if frozen:
                    parameter.grad = None
            self.frozen = frozen
        if frozen:
            self.encoder.eval()  # the loop sets train mode each epoch; BatchNorm keeps its statistics
