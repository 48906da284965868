"""The model adapter: a checkpoint's network with the rates it works at, called on rows of samples."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from audio_superres.models.checkpoint import CheckpointError, load_model
from audio_superres.models.device import DeviceError, resolve_device
from audio_superres.models.packaged import PACKAGED_ALIAS, checkpoint_path
from audio_superres.settings import UpsamplingSettings


class UpsampleError(Exception):
    """The stage cannot run at all (no checkpoint, no such device); the message is one line."""


@dataclass
class Upsampler:
    """A network with the rates it works at: ``model`` maps ``(batch, 1, n)`` at ``low_rate`` to
    ``(batch, 1, n * factor)``. Calling it runs rows of equal length through the model in batches."""

    model: nn.Module
    factor: int
    low_rate: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    # None: 1 on a CPU (one 20 s window at a time stays in cache: 1.1x faster than four on a 2-core
    # machine), 32 on a GPU (more rows per call keep a GPU busy)
    batch_size: int | None = None
    bf16: bool | str = False  # "auto": on a GPU, when the model keeps its signal path in float32 (``bf16_safe``)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.model = self.model.to(self.device).eval()
        if self.batch_size is None:
            self.batch_size = 32 if self.device.type == "cuda" else 1
        if self.bf16 == "auto":  # not on a CPU: without native bfloat16 (AVX2) the bwe trunk ran 5.6x slower under it
            self.bf16 = self.device.type == "cuda" and bool(getattr(self.model, "bf16_safe", False))
        self._autocast = bool(self.bf16)
        if self.bf16 and hasattr(self.model, "cast_trunk"):  # bfloat16 weights: no casts at every call
            self.model = copy.deepcopy(self.model)  # the caller's model keeps its float32 weights
            self.model.cast_trunk(torch.bfloat16)
            self._autocast = False

    @property
    def high_rate(self) -> int:
        return self.low_rate * self.factor

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (r, n) float32 at the low rate -> (r, n * factor) float32 at the high rate."""
        out = np.empty((rows.shape[0], rows.shape[1] * self.factor), dtype=np.float32)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self._autocast else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, rows.shape[0], self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(rows[start : start + self.batch_size])).to(self.device).unsqueeze(1)
                y = self.model(x)
                if y.shape != (x.shape[0], 1, x.shape[2] * self.factor):
                    raise RuntimeError(f"model returned shape {tuple(y.shape)} for input {tuple(x.shape)}; expected (batch, 1, n * {self.factor})")
                out[start : start + len(x)] = y[:, 0].float().cpu().numpy()
        return out


def find_checkpoint(cli_value: str | Path | None, settings: UpsamplingSettings) -> Path:
    """The checkpoint to use: ``--checkpoint``, else ``upsampling.checkpoint``, else the packaged
    default model (speech, 4 kHz -> 16 kHz)."""
    chosen = cli_value if cli_value is not None else settings.checkpoint
    if chosen is None:
        chosen = PACKAGED_ALIAS
    path = checkpoint_path(chosen)
    if str(chosen) == PACKAGED_ALIAS and not path.is_file():
        raise UpsampleError("no checkpoint: the packaged model is not installed; pass --checkpoint FILE or set upsampling.checkpoint (--set upsampling.checkpoint=runs/x/best.pt)")
    if not path.is_file():
        raise UpsampleError(f"{path}: checkpoint file does not exist ({'--checkpoint' if cli_value is not None else 'upsampling.checkpoint'})")
    return path


def load_upsampler(checkpoint: str | Path, settings: UpsamplingSettings, device: str | None = None) -> tuple[Upsampler, dict]:
    """The checkpoint's network as an :class:`Upsampler` (rates and factor from its stored data
    settings), on ``device`` (default ``settings.device``), with its info dict."""
    try:
        dev = resolve_device(device or settings.device, "--device" if device else "upsampling.device")
        model, info = load_model(checkpoint, device=str(dev))
    except (CheckpointError, DeviceError) as e:
        raise UpsampleError(str(e)) from None
    if hasattr(model, "band_gain"):
        model.band_gain = settings.band_gain
    data = info["data"]
    up = Upsampler(model, int(data["factor"]), int(data["low_rate"]), dev, settings.batch_size, settings.bf16)
    return up, info
