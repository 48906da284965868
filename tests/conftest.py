"""Shared helpers: generated talks (no real recordings needed) and the optional real-data folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PIPELINE_SHARED_DATA", REPO.parent / "shared" / "data"))


def write_talk(path: Path, seconds: float, seed: int = 0, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth_speech(seconds, sample_rate, seed=seed), sample_rate, subtype=subtype)
    return path


def empty_settings(folder: Path) -> Path:
    """A settings folder with no files in it: every setting at its built-in default."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_settings(input_dir: Path, output_dir: Path, **changes) -> DataSettings:
    """Small-corpus settings: 1 s trim, 2 s clips, serial unless told otherwise."""
    base = {"input_dir": input_dir, "output_dir": output_dir, "trim_seconds": 1.0, "n_jobs": 1}
    base.update(changes)
    return DataSettings(**base)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Training clips for a test module: 5 talks of 4 s -> 20 clips of 0.5 s; by talk: 12 train
    (3 steps an epoch at batch 4), 4 val, 4 test."""
    from audio_superres.preprocessing.splice import splice
    from audio_superres.preprocessing.split import split

    root = tmp_path_factory.mktemp("train_clips")
    for i in range(5):
        write_talk(root / "talks" / f"talk_{i}.flac", 4.0, seed=i)
    data = data_settings(root / "talks", root / "clips", clip_seconds=0.5)
    splice(data, quiet=True)
    split(root / "clips", data.splits, quiet=True)
    return root / "clips"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.csv").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
