"""A deterministic generator of speech-like audio, for tests and the demo (no real recordings are
shipped with the project).

Each "talk" is a sequence of syllable-sized segments from one synthetic speaker:

* voiced segments: a glottal source (harmonics of a moving pitch, falling 12 dB/octave, up to the
  Nyquist frequency) shaped by three formant resonances that move from vowel to vowel;
* fricatives: noise bursts high-passed at 2-4 kHz, so that there is real content up to 8 kHz that
  is only weakly predictable from the low band, as in speech;
* short pauses, with a faint noise floor.

A speaker (``seed``) fixes the pitch range and a vocal-tract scale applied to every formant, so that
talks from different seeds differ the way different speakers do. Same arguments, same samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.signal

from .audio import write_audio

# (F1, F2, F3) in Hz of a few vowels of an adult male; scaled per speaker
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [530, 1840, 2480], [570, 840, 2410], [300, 870, 2240], [660, 1720, 2410], [490, 1350, 1690]], dtype=np.float64)


def _resonator(freq: float, bandwidth: float, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth / sample_rate)
    theta = 2 * np.pi * freq / sample_rate
    a = np.array([1.0, -2 * r * np.cos(theta), r * r])
    return np.array([a.sum()]), a  # unit gain at DC


def _voiced(n: int, f0_start: float, f0_end: float, formants: np.ndarray, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    f0 = np.geomspace(f0_start, f0_end, n) * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t / sample_rate))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)
    source = np.zeros(n)
    for k in range(1, int(sample_rate / 2 / f0.min())):
        audible = k * f0 < sample_rate / 2  # band-limited: no harmonic above Nyquist
        source += np.where(audible, np.sin(k * phase) / k**2, 0.0)
    source += 0.002 * rng.standard_normal(n)  # breath noise
    y = source
    for i, (f, bw) in enumerate(zip(formants, (80.0, 100.0, 140.0))):
        b, a = _resonator(min(f, 0.45 * sample_rate), bw, sample_rate)
        y = scipy.signal.lfilter(b, a, y)
    # pre-emphasis-like tilt keeps the 2-8 kHz band audible
    return scipy.signal.lfilter([1.0, -0.9], [1.0], y)


def _fricative(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    cutoff = min(rng.uniform(2000, 4000), 0.4 * sample_rate)
    sos = scipy.signal.butter(4, cutoff, btype="high", fs=sample_rate, output="sos")
    return scipy.signal.sosfilt(sos, rng.standard_normal(n)) * rng.uniform(0.05, 0.15)


def synth_speech(seconds: float, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """``seconds`` of speech-like float32 audio at ``sample_rate``, peak about 0.5."""
    speaker = np.random.default_rng(seed)
    f0_low = speaker.uniform(85, 200)
    tract = speaker.uniform(0.85, 1.2)
    rng = np.random.default_rng([seed, 1])
    n_total = int(round(seconds * sample_rate))
    out = np.zeros(n_total)
    pos = 0
    while pos < n_total:
        n = min(int(rng.uniform(0.08, 0.3) * sample_rate), n_total - pos)
        kind = rng.choice(3, p=[0.7, 0.2, 0.1])
        if kind == 0:
            formants = _VOWELS[rng.integers(len(_VOWELS))] * tract * rng.uniform(0.95, 1.05, 3)
            f0a, f0b = f0_low * rng.uniform(1.0, 1.6, 2)
            seg = _voiced(n, f0a, f0b, formants, sample_rate, rng) * rng.uniform(0.5, 1.0)
        elif kind == 1:
            seg = _fricative(n, sample_rate, rng)
        else:
            seg = np.zeros(n)
        ramp = min(n // 2, int(0.01 * sample_rate))
        if ramp > 0:
            window = np.ones(n)
            window[:ramp] = np.linspace(0, 1, ramp)
            window[-ramp:] = np.linspace(1, 0, ramp)
            seg = seg * window
        out[pos : pos + n] = seg
        pos += n
    out += 3e-4 * rng.standard_normal(n_total)  # room noise floor
    peak = np.abs(out).max()
    return (0.5 * out / peak if peak > 0 else out).astype(np.float32)


def generate_talks(out_dir: str | Path, n_talks: int = 10, seconds: float = 60.0, sample_rate: int = 16000, seed: int = 0) -> list[Path]:
    """Write ``n_talks`` talks ``talk_00.flac`` ... (16-bit, one synthetic speaker each) to ``out_dir``."""
    out_dir = Path(out_dir)
    paths = []
    for i in range(n_talks):
        path = out_dir / f"talk_{i:02d}.flac"
        write_audio(path, synth_speech(seconds, sample_rate, seed=seed * 1000 + i), sample_rate)
        paths.append(path)
    return paths
