"""Helpers for the inference and evaluation tests: the rates of a 4 kHz -> 16 kHz model, a tiny
untrained checkpoint saved as `pipeline train` would, a cubic-interpolation upsampler, and a corpus of
generated talks spliced and split."""

from __future__ import annotations

from pathlib import Path

import torch

from audio_superres.models.checkpoint import save_checkpoint
from audio_superres.models.interpolation import Interpolator
from audio_superres.models.registry import build_model
from audio_superres.pipeline.inference import Upsampler
from audio_superres.preprocessing.splice import splice
from audio_superres.preprocessing.split import split
from audio_superres.settings import ModelSettings

from ..conftest import data_settings, write_talk

LOW, FACTOR, HIGH = 4000, 4, 16000


def save_tiny_checkpoint(path: Path, width: int = 2, depth: int = 2, seed: int = 0) -> Path:
    """An untrained audiounet saved as `pipeline train` would (4 kHz -> 16 kHz, soxr low-res)."""
    torch.manual_seed(seed)
    settings = ModelSettings(name="audiounet", width=width, depth=depth)
    model = build_model(settings, FACTOR)
    save_checkpoint(
        path,
        {"family": settings.name, "model": settings.model_dump(mode="json"), "data": {"sample_rate": HIGH, "factor": FACTOR, "low_rate": LOW, "lowres": ["soxr"]}, "model_state": model.state_dict()},
    )
    return path


def cubic_upsampler(batch_size: int = 4) -> Upsampler:
    return Upsampler(Interpolator(FACTOR, "cubic"), FACTOR, LOW, batch_size=batch_size)


def spliced_talks(tmp_path: Path, seconds: float, talks: int = 5) -> tuple[Path, Path]:
    """``talks`` generated talks of ``seconds`` in ``tmp_path/talks``, spliced into ``tmp_path/clips`` and
    split: (talks folder, clips folder)."""
    folder = tmp_path / "talks"
    for i in range(talks):
        write_talk(folder / f"talk{i}.flac", seconds, seed=i)
    data = data_settings(folder, tmp_path / "clips")
    splice(data, quiet=True)
    split(data.output_dir, data.splits, quiet=True)
    return folder, tmp_path / "clips"
