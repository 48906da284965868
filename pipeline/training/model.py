"""The model of a run: the network built (and started from ``training.init_from``), the moving
average of its weights (``training.ema_decay``) and the module the loop calls (the network, or its
DistributedDataParallel wrapper, which :func:`~.train.train` puts on)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio_superres.models.checkpoint import CheckpointData, CheckpointError, read_checkpoint
from audio_superres.models.packaged import checkpoint_path
from audio_superres.models.registry import build_model
from audio_superres.settings import Settings

from .errors import TrainingError
from .processes import Processes


@dataclass
class Networks:
    raw: nn.Module  # the network the optimiser trains
    ema: nn.Module | None  # the moving average of its weights, with training.ema_decay
    model: nn.Module = field(init=False)  # what the loop calls: raw, or its DDP wrapper

    def __post_init__(self):
        self.model = self.raw

    @property
    def scored(self) -> nn.Module:
        """The weights that are validated, kept and shipped: the trained ones, or their moving average."""
        return self.ema if self.ema is not None else self.raw


def build_networks(settings: Settings, data: CheckpointData, procs: Processes, init_from: Path | None) -> Networks:
    """The network of ``settings.model`` for ``data``'s factor on this process's device, with the
    weights of ``init_from`` if given; then this process's own dropout stream."""
    t = settings.training
    # the same initial weights on every process (DDP also broadcasts rank 0's), then a different
    # dropout stream per process
    torch.manual_seed(t.seed)
    try:
        raw = build_model(settings.model, data["factor"]).to(procs.device)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if init_from is not None:
        load_initial_weights(raw, init_from, settings, data)
    torch.manual_seed(t.seed + procs.rank)
    np.random.seed(t.seed + procs.rank)
    random.seed(t.seed + procs.rank)
    if procs.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    if t.mse_weight + t.stft_weight <= 0 and not callable(getattr(raw, "training_losses", None)):
        raise TrainingError(f"training.mse_weight and stft_weight are both 0 and model {settings.model.name} adds no loss of its own: nothing to minimise")
    # every process keeps the same average, from the same all-reduced updates
    ema = copy.deepcopy(raw).requires_grad_(False) if t.ema_decay is not None else None
    return Networks(raw, ema)


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Move ``average``'s weights towards ``model``'s: ``avg += (1 - d) * (w - avg)``, with ``d`` ramped
    up as ``min(decay, (1 + step) / (10 + step))`` so that the first steps are not held back by the
    initial weights (as in TensorFlow's ExponentialMovingAverage); buffers are copied."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - d)
    for a, b in zip(average.buffers(), model.buffers()):
        a.copy_(b)


def load_initial_weights(model: nn.Module, path: Path, settings: Settings, data: CheckpointData) -> None:
    """Load into ``model`` the weights of checkpoint ``path`` (``training.init_from``; ``packaged``:
    the model that ships), for a run of ``settings`` on ``data``: same family, architecture and rates. The loss
    weights (``model.bwe.lsd_weight`` and the like) may differ: fine-tuning with other ones is the point."""
    path = checkpoint_path(path)
    try:
        checkpoint = read_checkpoint(path, map_location="cpu")
    except CheckpointError as e:
        raise TrainingError(f"training.init_from: {e}") from None
    if checkpoint["family"] != settings.model.name:
        raise TrainingError(f"training.init_from: {path} holds a {checkpoint['family']} model; this run trains model.name={settings.model.name}")
    for key in ("sample_rate", "factor", "low_rate"):  # the low-res methods may differ
        if int(checkpoint["data"][key]) != int(data[key]):
            raise TrainingError(f"training.init_from: {path} was trained with {key}={checkpoint['data'][key]}, these splits give {data[key]}")
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError:
        then = model_settings_then(checkpoint["model"], settings)
        raise TrainingError(f"training.init_from: {path}: its weights do not fit this run's model; it was made with {then or 'other settings'}") from None


def model_settings_then(model_then: dict, settings: Settings) -> str:
    """``model.KEY=VALUE, ...``: the model settings of a checkpoint (its ``model`` dict) that differ from this run's ('' if none)."""
    now = settings.model.model_dump(mode="json")
    return ", ".join(f"model.{k}={model_then.get(k)!r}" for k in sorted(now) if model_then.get(k) != now[k])
