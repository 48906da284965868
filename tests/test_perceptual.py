"""Perceptual scores (the optional ``metrics`` extra) on generated speech: the top of each scale for
an identical copy, clear drops for noise and for a lost high band, NaN (never an exception) for
files a metric cannot score. Tests that need pesq and visqol-python skip without them."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import scipy.signal

from audio_superres.pipeline.evaluation import perceptual
from audio_superres.pipeline.evaluation.perceptual import (
    LATTICE,
    MISSING_HINT,
    POLYNOMIAL,
    available,
    perceptual_scores,
    visqol_mapping,
)
from audio_superres.preprocessing.synth import synth_speech

RATE = 16000
needs_packages = pytest.mark.skipif(not all(available().values()), reason=MISSING_HINT)


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767) / 32767


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """3.5 s of synthetic speech (moving pitch, formants, fricatives, pauses), 16-bit values."""
    return pcm16(synth_speech(3.5, RATE, seed=0).astype(np.float64))


@pytest.fixture(scope="module")
def scores(speech: np.ndarray) -> dict[str, dict[str, float]]:
    """Each degradation scored once for the whole module (ViSQOL takes ~0.3 s a call)."""
    noise = np.random.default_rng(1).standard_normal(len(speech))
    noise *= np.linalg.norm(speech) / np.linalg.norm(noise) / 10 ** (10 / 20)  # SNR 10 dB
    lowpass = scipy.signal.sosfiltfilt(scipy.signal.butter(8, 2000, fs=RATE, output="sos"), speech)
    degraded = {"same": speech.copy(), "noise_10db": pcm16(speech + noise), "lowpass_2k": pcm16(lowpass)}
    return {name: perceptual_scores(speech, deg) for name, deg in degraded.items()}


@needs_packages
def test_identical_scores_near_the_top_of_each_scale(scores):
    assert scores["same"]["pesq_wb"] > 4.0  # scale tops out at 4.64
    assert scores["same"]["visqol"] > 4.0  # 5.0 with the polynomial mapping, ~4.7 with the lattice


@needs_packages
@pytest.mark.parametrize("degradation", ["noise_10db", "lowpass_2k"])
@pytest.mark.parametrize("metric", ["pesq_wb", "visqol"])
def test_degradation_lowers_the_score_clearly(scores, degradation, metric):
    assert scores[degradation][metric] < scores["same"][metric] - 0.5, scores


@needs_packages
def test_visqol_mapping_is_the_lattice_exactly_when_its_runtime_imports():
    try:
        import ai_edge_litert.interpreter  # noqa: F401

        expected = LATTICE
    except ImportError:
        expected = POLYNOMIAL
    assert visqol_mapping() == expected


CANNOT_SCORE = {
    "silence": lambda s: (np.zeros(3 * RATE), np.zeros(3 * RATE)),  # PESQ: "no utterances detected"
    "silent_output": lambda s: (s, np.zeros_like(s)),  # PESQ fails inside; ViSQOL returns NaN
    "too_short": lambda s: (s[RATE : RATE + RATE // 10],) * 2,  # 0.1 s: under PESQ's 1/4 s, no ViSQOL patch
}


@pytest.mark.parametrize("case", CANNOT_SCORE)
def test_files_a_metric_cannot_score_give_nan_without_raising(speech, case):
    result = perceptual_scores(*CANNOT_SCORE[case](speech))
    assert set(result) == {"visqol", "pesq_wb"}
    assert math.isnan(result["visqol"]) and math.isnan(result["pesq_wb"]), result


@needs_packages
def test_pesq_is_not_run_past_its_utterance_limit(speech, monkeypatch):
    # the P.862 code overruns its 50-utterance table on long files (a crash or a wrong score)
    monkeypatch.setattr(perceptual, "PESQ_MAX_SECONDS", 3.0)
    result = perceptual_scores(speech, speech.copy())
    assert math.isnan(result["pesq_wb"]) and result["visqol"] > 4.0


def test_other_rates_raise_a_clear_value_error(speech):
    with pytest.raises(ValueError, match="defined at 16000 Hz here, got 8000 Hz"):
        perceptual_scores(speech[::2], speech[::2], rate=8000)


def test_mismatched_or_non_finite_input_raises(speech):
    with pytest.raises(ValueError, match="one length"):
        perceptual_scores(speech, speech[:-1])
    with pytest.raises(ValueError, match="one length"):
        perceptual_scores(np.stack([speech, speech]), np.stack([speech, speech]))
    broken = speech.copy()
    broken[100] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        perceptual_scores(speech, broken)


def test_without_the_packages_scores_are_nan_and_the_hint_names_the_extra(speech, monkeypatch):
    monkeypatch.setitem(sys.modules, "pesq", None)  # a None entry makes `import pesq` fail
    monkeypatch.setitem(sys.modules, "visqol", None)
    perceptual._visqol.cache_clear()
    try:
        assert available() == {"visqol": False, "pesq_wb": False}
        assert visqol_mapping().startswith("none")
        result = perceptual_scores(speech, speech)
        assert math.isnan(result["visqol"]) and math.isnan(result["pesq_wb"])
    finally:
        perceptual._visqol.cache_clear()  # the next caller builds the real one again
    assert 'pip install -e ".[metrics]"' in MISSING_HINT
