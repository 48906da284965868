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
from audio_superres.pipeline.evaluation.perceptual import LATTICE, MISSING_HINT, POLYNOMIAL, available, perceptual_scores, visqol_mapping
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
def test_pesq_is_never_run_past_its_utterance_limit_long_files_are_scored_in_segments(speech, scores, monkeypatch):
    # the P.862 code overruns its 50-utterance table on long files (a crash or a wrong score)
    import pesq

    lengths, real = [], pesq.pesq
    monkeypatch.setattr(pesq, "pesq", lambda rate, ref, deg, mode: lengths.append(len(ref)) or real(rate, ref, deg, mode))
    monkeypatch.setattr(perceptual, "PESQ_MAX_SECONDS", 1.5)
    result = perceptual_scores(speech, speech.copy())
    assert lengths == [len(speech) // 3 + (k < len(speech) % 3) for k in range(3)]  # 3.5 s: three equal segments under 1.5 s
    assert result["pesq_wb"] > 4.0 and result["visqol"] == pytest.approx(scores["same"]["visqol"])
    lengths.clear()
    noisy = perceptual_scores(speech, pcm16(speech + 0.05 * np.random.default_rng(2).standard_normal(len(speech))))
    assert len(lengths) == 3 and noisy["pesq_wb"] < result["pesq_wb"] - 0.5


def test_pesq_of_segments_is_the_mean_of_those_it_can_score(monkeypatch):
    pytest.importorskip("pesq")
    import pesq

    answers = iter([2.0, pesq.PesqError("no utterances detected"), 3.0])

    def fake(rate, ref, deg, mode):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(pesq, "pesq", fake)
    monkeypatch.setattr(perceptual, "PESQ_MAX_SECONDS", 1.0)
    x = np.full(int(2.5 * RATE), 0.1)
    assert perceptual._pesq_wb(x, x) == pytest.approx(2.5)  # a silent segment is left out, not scored 0


def test_max_seconds_scores_the_middle_only(speech, monkeypatch):
    seen = []
    monkeypatch.setattr(perceptual, "_visqol_moslqo", lambda ref, deg: seen.append((ref, deg)) or 3.0)
    monkeypatch.setattr(perceptual, "_pesq_wb", lambda ref, deg: seen.append((ref, deg)) or 2.0)
    degraded = speech * 0.5
    assert perceptual_scores(speech, degraded, max_seconds=1.0) == {"visqol": 3.0, "pesq_wb": 2.0}
    start = (len(speech) - RATE) // 2
    for ref, deg in seen:
        assert np.array_equal(ref, speech[start : start + RATE]) and np.array_equal(deg, degraded[start : start + RATE])
    seen.clear()
    perceptual_scores(speech, degraded, max_seconds=10.0)  # longer than the file: all of it
    assert all(len(ref) == len(speech) for ref, _ in seen)
    with pytest.raises(ValueError, match="max_seconds"):
        perceptual_scores(speech, degraded, max_seconds=-1.0)


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
