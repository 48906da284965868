"""The optimiser of a run: AdamW (weight decay on weight matrices and kernels only) with a linear
warmup, then a cosine down to ``MIN_LR_FRACTION`` of the peak over the run (or ``training.lr_decay_steps``)."""

from __future__ import annotations

import math

import torch
from torch import nn

from audio_superres.settings import TrainingSettings

MIN_LR_FRACTION = 0.1  # the cosine ends at this fraction of the peak learning rate, not at 0


def make_optimizer(model: nn.Module, t: TrainingSettings, max_steps: float) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """``(optimizer, scheduler)`` for ``model``'s parameters, the schedule over ``max_steps`` steps."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.learning_rate, betas=(0.9, 0.99), fused=on_cuda)
    decay_steps = t.lr_decay_steps or int(max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t.warmup_steps, decay_steps))
    return optimizer, scheduler


def lr_factor(step: int, warmup_steps: int, decay_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warmup, then a cosine down to
    ``MIN_LR_FRACTION`` at ``decay_steps``, flat after."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return MIN_LR_FRACTION
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying biases and norm gains only hurts."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]
