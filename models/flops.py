"""Size and cost of a network, the figures reported beside its quality (``shared/docs/metrics.md``
quotes AP-BWE at 5.97 GFLOPs per second of audio)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Every parameter, trainable or not (buffers such as fixed filters are not parameters)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_second(model: nn.Module, factor: int, low_rate: int) -> int:
    """Floating-point operations (a multiply-add counts 2) of one forward pass on one second of
    audio, ``low_rate`` low-res samples, in eval mode without gradients, as counted by
    ``torch.utils.flop_counter``: convolutions and matrix products, not element-wise work or FFTs.

    Runs on the model's device (its first parameter's, else CPU), on silence, and checks that the
    model returns ``low_rate * factor`` samples (so the figure is per second of the output too)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            out = model(torch.zeros(1, 1, low_rate, device=device))
    finally:
        model.train(was_training)
    if out.shape[-1] != low_rate * factor:
        raise ValueError(f"model returned {out.shape[-1]} samples for {low_rate} at factor {factor}, expected {low_rate * factor}")
    return int(counter.get_total_flops())
