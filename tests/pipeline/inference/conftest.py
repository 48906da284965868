"""Helpers for the inference tests: short chunks, an SNR, generated input files, and a tiny
checkpoint as a fixture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_superres.pipeline.inference import ChunkPlan
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import UpsamplingSettings

from ..conftest import LOW, save_tiny_checkpoint


def short_chunks(**changes) -> ChunkPlan:
    """Chunks of about 1 s so that a few seconds of audio cross several joins."""
    base = {"chunk_seconds": 1.0, "overlap_seconds": 0.1, "context_seconds": 0.1}
    return ChunkPlan.from_settings(UpsamplingSettings(**{**base, **changes}), LOW)


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(ref) / np.linalg.norm(ref - est)))


@pytest.fixture
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _write(path: Path, seconds: float, rate: int = LOW, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = synth_speech(seconds, rate, seed=seed)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, rate, subtype="PCM_16")
    return path
