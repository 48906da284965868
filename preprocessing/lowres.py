"""How the low-resolution twin of a clip is made. A model learns the inverse of exactly one of these,
so the method is a setting that travels with the data into the manifest and every checkpoint.

* ``soxr``: the SoX resampler, quality HQ: a deep anti-aliasing low-pass, then decimation. Default,
  and what most real narrow-band audio resembles.
* ``decimate``: an 8th-order Chebyshev type I low-pass (zero phase) then every ``factor``-th sample,
  as ``scipy.signal.decimate``; Kuleshov et al.'s single-speaker data.
* ``subsample``: every ``factor``-th sample with no low-pass at all, so the high band folds back
  (aliases) into the low band; Kuleshov et al.'s multi-speaker data.
* ``butterworth``: an 8th-order Butterworth low-pass at the new Nyquist frequency (zero phase), then
  every ``factor``-th sample.

Every method returns exactly ``len(x) // factor`` samples for a length that is a multiple of
``factor``, so that the high-res clip is always ``factor`` times its twin.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.signal
import soxr


@lru_cache(maxsize=16)
def _chebyshev(factor: int) -> tuple[np.ndarray, np.ndarray]:
    return scipy.signal.cheby1(8, 0.05, 0.8 / factor)


@lru_cache(maxsize=16)
def _butterworth(factor: int) -> np.ndarray:
    return scipy.signal.butter(8, 1.0 / factor, btype="low", output="sos")


def make_lowres(x: np.ndarray, factor: int, method: str = "soxr", sample_rate: int = 16000) -> np.ndarray:
    """The low-res twin of ``x`` (1-D float) at ``sample_rate / factor``."""
    x = np.asarray(x, dtype=np.float32)
    n_out = len(x) // factor
    if method == "soxr":
        y = soxr.resample(x, sample_rate, sample_rate // factor, quality="HQ")
    elif method == "decimate":
        # scipy.signal.decimate(x, factor, n=8, ftype="iir", zero_phase=True), written out so that
        # inputs shorter than its fixed filtfilt padding still work
        b, a = _chebyshev(factor)
        y = scipy.signal.filtfilt(b, a, x, padlen=min(len(x) - 1, 3 * len(a)))[::factor] if len(x) > 1 else x[::factor]
    elif method == "subsample":
        y = x[::factor]
    elif method == "butterworth":
        sos = _butterworth(factor)
        padlen = min(len(x) - 1, 3 * (2 * len(sos) + 1))
        y = scipy.signal.sosfiltfilt(sos, x, padlen=padlen)[::factor] if len(x) > 1 else x[::factor]
    else:
        raise ValueError(f"unknown low-res method {method!r}; choose soxr, decimate, subsample or butterworth")
    y = np.asarray(y, dtype=np.float32)
    # soxr may round its output length differently from n_out for lengths not divisible by factor
    if len(y) > n_out:
        y = y[:n_out]
    elif len(y) < n_out:
        y = np.pad(y, (0, n_out - len(y)))
    return y
