"""Helpers for the tests of the research families (``audiounet``, ``tfnet``) and their parts; the
``bwe`` family's tests have their own (test_bwe.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from audio_superres.models.registry import build_model
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import ModelSettings

FAMILIES = ("audiounet", "tfnet")


FACTOR = 4


def tiny(name: str, **changes) -> nn.Module:
    settings = {"name": name, "width": 4, "depth": 3, **changes}
    torch.manual_seed(0)
    return build_model(ModelSettings(**settings), FACTOR)


def speech_pair(seconds: float, seeds=(1, 2), method: str = "soxr") -> tuple[torch.Tensor, torch.Tensor]:
    """(low-res (batch, 1, n), high-res (batch, 1, n * FACTOR)) from generated speech."""
    hr = np.stack([synth_speech(seconds, 16000, seed=s) for s in seeds])
    lr = np.stack([make_lowres(h, FACTOR, method) for h in hr])
    return torch.tensor(lr)[:, None], torch.tensor(hr)[:, None]


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(ref) / np.linalg.norm(ref - est)))
