"""The shipped models: names as checkpoints, and the choice of model by measured bandwidth."""

from __future__ import annotations

import pytest

from audio_superres.models import packaged
from audio_superres.models.packaged import SHIPPED, checkpoint_path, choose_model


def test_names_stand_for_the_shipped_files():
    assert checkpoint_path("packaged") == packaged.PACKAGED_CHECKPOINT
    assert checkpoint_path("speech-4k") == packaged.PRETRAINED_DIR / "bwe_speech_4k_16k.pt"
    assert checkpoint_path("runs/x/best.pt").as_posix() == "runs/x/best.pt"


@pytest.fixture
def all_installed(monkeypatch):
    monkeypatch.setattr(packaged, "installed", lambda: list(SHIPPED))


@pytest.mark.parametrize(
    "cutoff, rate, expected",
    [
        (8000, 16000, None),  # wideband at the output rate: nothing to invent
        (7641, 16000, None),  # a recorder's own edge near Nyquist (RAVDESS) is still wideband
        (22050, 44100, None),
        (3777, 8000, "speech-8k"),  # a telephone call at 8 kHz
        (3828, 16000, "speech-8k"),  # a 16 kHz file whose content stops near 4 kHz
        (3000, 16000, "speech-8k"),  # between two models: the one that keeps 2-3 kHz
        (1906, 16000, "speech-4k"),  # the widest soxr 4 kHz round trip measured on real speech
        (930, 16000, "speech-2k"),
        (500, 16000, "speech-2k"),
        (6000, 16000, None),  # an MP3-style cut at 6 kHz: no model keeps 4-6 kHz, so it is copied
    ],
)
def test_choice_keeps_every_real_band(all_installed, cutoff, rate, expected):
    chosen = choose_model(cutoff, rate)
    assert (chosen.name if chosen else None) == expected
    if chosen is not None:
        assert chosen.input_band_hz >= cutoff  # never a model whose input throws away real band


def test_piano_gets_the_piano_model(all_installed):
    assert choose_model(1875, 16000, material="piano").name == "piano-4k"


def test_only_installed_models_are_chosen(monkeypatch):
    monkeypatch.setattr(packaged, "installed", lambda: [m for m in SHIPPED if m.name == "speech-4k"])
    assert choose_model(1875, 16000).name == "speech-4k"
    assert choose_model(3777, 8000) is None  # the 4 kHz model would throw 2-4 kHz away
    monkeypatch.setattr(packaged, "installed", lambda: [])
    assert choose_model(3777, 8000) is None
