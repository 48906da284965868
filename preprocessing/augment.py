"""Channel augmentation: a random recording channel applied to the high-res (target) clip before its
low-res twin is made, so that input and target always agree. The shipped model saw two recording
channels and invents one steady 4-8 kHz layer, while other corpora's spectra differ: each augmentation
varies one property that differs between corpora, so that no channel's fingerprint can be learnt.

* tilt, T dB per octave about 1 kHz (flat below 50 Hz), zero phase: microphones, and the distance to
  them, tip the whole spectrum (close talking is bass-heavy, far or cheap capsules are dull).
* EQ, 1-3 RBJ-cookbook biquads (peak, low or high shelf) at 100 Hz - 7 kHz, causal: capsule
  resonances, presence peaks and dips are bumps of a few dB, not slopes.
* room, a synthetic impulse response (direct path at lag 0, so no delay; from 2 ms a Gaussian tail
  falling 60 dB in the drawn RT60, at the drawn direct-to-reverberant ratio): other corpora are
  recorded farther from the mouth, in livelier rooms.
* noise floor, white or pink (-3 dB/octave), at a drawn level re the clip's RMS: every recording has
  one, and since the target keeps it, the model learns to carry the input's floor into the high band
  rather than invent it away (or invent one where there is none).
* level, a drawn gain: recordings sit at any level, and the high band must not depend on it.

Each fires with its own probability; they apply as room, tilt, EQ, noise, level, and a result past
32767/32768 is scaled down, never clipped. :func:`draw` makes one example's random choices,
:func:`apply` is a pure function of the clip and those choices (tests check each effect against its
drawn value), :func:`augment` is both. Room and tilt are one product of spectra padded so that
nothing wraps around: ``scipy.signal.fftconvolve`` with the room's response cut to the clip's length.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.signal

PEAK = 32767 / 32768  # full scale less one 16-bit step
TILT_PIVOT_HZ, TILT_FLAT_BELOW_HZ, PINK_FLAT_BELOW_HZ = 1000.0, 50.0, 20.0
SHELF_Q = 2**-0.5  # shelves at RBJ slope S = 1 (no bump at the corner); Q is drawn for peaks only
EQ_KINDS = ("peak", "low_shelf", "high_shelf")
ROOM_ONSET_S = 0.002  # first reflections after the direct path
PAD_S = 0.1  # zero padding past clip and room tail: the tilt's two-sided response dies out in it


@dataclass(frozen=True)
class Augmentation:
    """Probabilities ``p_*`` (0: never) and ``(low, high)`` ranges, drawn uniformly (EQ frequency and
    Q log-uniformly). The ranges are the packaged recipe's (:data:`ON_RECIPE`); all probabilities are
    0, so ``Augmentation()`` is :data:`OFF`. Plain numbers and tuples, for the settings to map onto."""

    p_tilt: float = 0.0
    tilt_db_per_octave: tuple[float, float] = (-2.0, 2.0)  # at most +-6 dB at 8 kHz
    p_eq: float = 0.0
    eq_bands: tuple[int, int] = (1, 3)
    eq_freq_hz: tuple[float, float] = (100.0, 7000.0)
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    eq_q: tuple[float, float] = (0.5, 2.0)
    p_room: float = 0.0
    rt60_s: tuple[float, float] = (0.1, 0.5)  # small rooms
    drr_db: tuple[float, float] = (5.0, 20.0)  # close to moderately far talking: speech stays clear
    p_noise: float = 0.0
    noise_db: tuple[float, float] = (-70.0, -40.0)  # re the clip's RMS
    p_pink: float = 0.5  # share of noise floors that are pink rather than white
    p_level: float = 0.0
    level_db: tuple[float, float] = (-20.0, 0.0)

    @property
    def active(self) -> bool:
        return max(self.p_tilt, self.p_eq, self.p_room, self.p_noise, self.p_level) > 0


OFF = Augmentation()
# ~30% of examples keep their channel (level aside, which changes no spectrum); the room, the most
# unlike the recordings we have, is the rarest
ON_RECIPE = Augmentation(p_tilt=0.3, p_eq=0.3, p_room=0.15, p_noise=0.3, p_level=0.5)


@dataclass(frozen=True)
class Draw:
    """One example's choices; ``None`` or empty: that augmentation does not fire."""

    tilt_db_per_octave: float | None = None
    eq: tuple[tuple[str, float, float, float], ...] = ()  # (kind, f0 Hz, gain dB, Q)
    room: tuple[float, float] | None = None  # (RT60 s, direct-to-reverberant ratio dB)
    noise: tuple[float, bool] | None = None  # (level dB re clip RMS, pink)
    level_db: float | None = None
    seed: int = 0  # for the room's tail and the noise


def draw(aug: Augmentation, rng: np.random.Generator) -> Draw:
    """One example's random choices under ``aug`` (nothing is drawn from ``rng`` when ``aug`` is off)."""
    if not aug.active:
        return Draw()
    ps = (aug.p_tilt, aug.p_eq, aug.p_room, aug.p_noise, aug.p_level)
    tilt_on, eq_on, room_on, noise_on, level_on = (p > 0 and rng.random() < p for p in ps)
    tilt = float(rng.uniform(*aug.tilt_db_per_octave)) if tilt_on else None
    eq: list[tuple[str, float, float, float]] = []
    for _ in range(int(rng.integers(aug.eq_bands[0], aug.eq_bands[1] + 1)) if eq_on else 0):
        kind = EQ_KINDS[int(rng.integers(len(EQ_KINDS)))]
        f0 = float(np.exp(rng.uniform(*np.log(aug.eq_freq_hz))))  # frequency and Q log-uniform
        gain, q = float(rng.uniform(*aug.eq_gain_db)), float(np.exp(rng.uniform(*np.log(aug.eq_q))))
        eq.append((kind, f0, gain, q if kind == "peak" else SHELF_Q))
    room = (float(rng.uniform(*aug.rt60_s)), float(rng.uniform(*aug.drr_db))) if room_on else None
    noise = (float(rng.uniform(*aug.noise_db)), bool(rng.random() < aug.p_pink)) if noise_on else None
    level = float(rng.uniform(*aug.level_db)) if level_on else None
    return Draw(tilt, tuple(eq), room, noise, level, int(rng.integers(2**63)))


def apply(x: np.ndarray, rate: int, d: Draw) -> np.ndarray:
    """``x`` (1-D float32 in [-1, 1]) through the channel ``d``: float32, same length, peak at most
    :data:`PEAK`. ``x`` itself, untouched, when nothing fires (or it is empty)."""
    if d == Draw(seed=d.seed) or len(x) == 0:  # nothing fires
        return x
    rng = np.random.default_rng(d.seed)
    y = np.asarray(x, dtype=np.float32)  # single precision (error ~-140 dB) halves the FFTs' cost
    if d.room is not None or d.tilt_db_per_octave is not None:
        rir = room_response(rate, *d.room, rng) if d.room is not None else np.ones(1, np.float32)
        nfft = scipy.fft.next_fast_len(len(y) + len(rir) + int(PAD_S * rate), real=True)
        h = scipy.fft.rfft(rir, nfft)
        if d.tilt_db_per_octave is not None:
            h *= np.exp(np.float32(d.tilt_db_per_octave * math.log(10) / 20) * _octaves(nfft, rate))
        y = scipy.fft.irfft(scipy.fft.rfft(y, nfft) * h, nfft)[: len(y)]
    if d.eq:
        y = scipy.signal.sosfilt(np.array([np.concatenate(biquad(*band, rate)) for band in d.eq]), y)
    if d.noise is not None:
        noise = pink_noise(len(y), rate, rng) if d.noise[1] else rng.standard_normal(len(y), np.float32)
        y = y + noise * (10 ** (d.noise[0] / 20) * np.sqrt(_power(y) / max(_power(noise), 1e-30)))
    if d.level_db is not None:
        y = y * 10 ** (d.level_db / 20)
    y = y * min(1.0, PEAK / max(float(np.max(np.abs(y))), 1e-30))  # scaled down, never clipped
    return np.clip(y, -PEAK, PEAK).astype(np.float32)  # this clip only catches rounding


def augment(x: np.ndarray, rate: int, aug: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """:func:`apply` of :func:`draw`: ``x`` itself when ``aug`` is off or nothing fires."""
    return apply(x, rate, draw(aug, rng))


def biquad(kind: str, f0: float, gain_db: float, q: float, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """RBJ Audio EQ Cookbook ``(b, a)``, ``a[0] == 1``; ``f0`` kept below 0.45 ``rate`` (valid at any rate)."""
    amp, w0 = 10 ** (gain_db / 40), 2 * np.pi * min(f0, 0.45 * rate) / rate
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * amp, -2 * cos, 1 - alpha * amp]
        a = [1 + alpha / amp, -2 * cos, 1 - alpha / amp]
    elif kind in ("low_shelf", "high_shelf"):
        s, k = (1 if kind == "low_shelf" else -1), 2 * np.sqrt(amp) * alpha  # high shelf: s = -1 in RBJ's formulas
        p, m = (amp + 1) - s * (amp - 1) * cos, (amp + 1) + s * (amp - 1) * cos
        b = [amp * (p + k), 2 * s * amp * ((amp - 1) - s * (amp + 1) * cos), amp * (p - k)]
        a = [m + k, -2 * s * ((amp - 1) + s * (amp + 1) * cos), m - k]
    else:
        raise ValueError(f"unknown EQ kind {kind!r}; choose one of {', '.join(EQ_KINDS)}")
    return np.array(b) / a[0], np.array(a) / a[0]


def room_response(rate: int, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: 1 at lag 0 (the direct path), then a Gaussian tail from
    :data:`ROOM_ONSET_S` whose envelope falls 60 dB in ``rt60`` seconds (cut there), its energy
    ``drr_db`` below the direct path's."""
    n = max(int(rt60 * rate), 2)
    envelope = np.exp(np.arange(n, dtype=np.float32) * np.float32(-3 * math.log(10) / (rt60 * rate)))  # -60 dB at rt60
    tail = rng.standard_normal(n, np.float32) * envelope
    tail[: max(1, int(ROOM_ONSET_S * rate))] = 0.0
    tail *= np.float32(np.sqrt(10 ** (-drr_db / 10) / max(float(np.dot(tail, tail)), 1e-30)))
    tail[0] = 1.0
    return tail


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def pink_noise(n: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of Gaussian noise whose power falls 3 dB per octave (1/f), flat below
    :data:`PINK_FLAT_BELOW_HZ`, no DC, any level (the caller sets it)."""
    m = scipy.fft.next_fast_len(n, real=True)
    spectrum = rng.standard_normal((m // 2 + 1, 2), np.float32).view(np.complex64)[:, 0]  # (real, imaginary) pairs
    spectrum /= np.sqrt(np.maximum(scipy.fft.rfftfreq(m, 1 / rate), PINK_FLAT_BELOW_HZ)).astype(np.float32)
    spectrum[0] = 0.0
    return scipy.fft.irfft(spectrum, m)[:n]


@functools.lru_cache(maxsize=32)
def _octaves(nfft: int, rate: int) -> np.ndarray:
    """Each rfft bin's distance from the tilt's pivot, in octaves (constant below the flat edge)."""
    octaves = np.log2(np.maximum(scipy.fft.rfftfreq(nfft, 1 / rate), TILT_FLAT_BELOW_HZ) / TILT_PIVOT_HZ).astype(np.float32)
    octaves.flags.writeable = False  # shared by every call
    return octaves
