"""Perceptual scores of a 16 kHz reconstruction against its 16 kHz truth (``shared/docs/metrics.md``).

Optional: both packages come with the ``metrics`` extra (``MISSING_HINT``); importing this module
never needs them. Both scores are MOS-LQO (a predicted listener mean opinion score); higher is better.

* ``visqol``: ViSQOL v3, speech mode (``visqol-python``), from 1 (bad) to 5 (excellent); identical
  signals read 5.0. Which curve maps similarity to MOS depends on the install: the deep-lattice
  model of the C++ default when ``ai-edge-litert`` is importable, else a polynomial that can read
  1-2 points higher on degraded speech. ``visqol_mapping()`` says which; compare systems only
  within one mapping, and print it beside every ViSQOL figure.
* ``pesq_wb``: wide-band PESQ, ITU-T P.862.2 (``pesq``, mode ``"wb"``), from about 1.04 to 4.64;
  identical signals read 4.64. It hears up to 7 kHz, so a loud or noisy invented band loses here.

Long files: the P.862 reference code has room for 50 utterances and writes past it on longer
files (a crash of the whole process or a silently wrong score), so PESQ is never called on more than
``PESQ_MAX_SECONDS``: a longer signal is cut into equal consecutive segments of at most that length,
each scored, and ``pesq_wb`` is their mean (segments PESQ cannot score left out). That is not the
single score P.862.2 would give the whole file, but it is what it gives each 20 s of it. ViSQOL takes
seconds per minute of audio: ``max_seconds`` scores both metrics on the middle of a long file only.

NaN means "not scored": the package is absent, or the metric cannot score this file. PESQ: no
utterance detected (silence), shorter than 1/4 s, a silent degraded signal. ViSQOL: silence, or no
patch to compare (shorter than about 0.7 s). Count NaNs when averaging over files: a model that
outputs silence is not scored, not scored badly.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

MISSING_HINT = 'perceptual scores need pesq and visqol-python: pip install -e ".[metrics]"'
RATE = 16000
# The P.862 code stores utterances (>= 50 frames of 4 ms, apart by > 50 frames) in 50 slots with no
# bound check; a 51st cannot start before 50 * 50 + 50 * 51 frames (20.2 s). 30 s of syllables crash it.
# Longer signals are scored in segments of at most this length.
PESQ_MAX_SECONDS = 20.0
# What `pipeline evaluate` scores of a longer file by default (its middle): ViSQOL takes ~5 s per
# minute of audio (3x that on a busy machine), for each of the three systems
EVALUATE_SECONDS = 60.0
LATTICE = "lattice"
POLYNOMIAL = "polynomial (no lattice runtime)"


def available() -> dict[str, bool]:
    """Which of the two scores can be computed here: ``{"visqol": bool, "pesq_wb": bool}``."""
    found = {}
    for key, module in (("visqol", "visqol"), ("pesq_wb", "pesq")):
        try:
            __import__(module)
            found[key] = True
        except ImportError:
            found[key] = False
    return found


@functools.cache
def _visqol() -> tuple[Any, str]:
    """One speech-mode ViSQOL per process, with the lattice mapping where its runtime imports."""
    from visqol import VisqolApi

    api = VisqolApi()
    try:
        api.create(mode="speech", use_lattice_model=True)  # ImportError without ai-edge-litert
        return api, LATTICE
    except ImportError:
        api = VisqolApi()
        api.create(mode="speech", use_lattice_model=False)  # explicit: no fallback warning
        return api, POLYNOMIAL


def visqol_mapping() -> str:
    """The quality mapping ViSQOL scores with here: ``LATTICE``, ``POLYNOMIAL`` or why neither."""
    try:
        return _visqol()[1]
    except ImportError:
        return "none (visqol-python not installed)"


def _pesq_wb(reference: np.ndarray, degraded: np.ndarray) -> float:
    """PESQ-WB of the whole signal when it is at most ``PESQ_MAX_SECONDS`` long, else the mean over
    equal consecutive segments of at most that length (NaN segments left out; NaN if all are)."""
    try:
        import pesq as pesq_module
    except ImportError:
        return math.nan
    limit = int(PESQ_MAX_SECONDS * RATE)
    pieces = max(1, -(-len(reference) // limit))  # ceil: no segment longer than the limit
    scores = []
    for ref, deg in zip(np.array_split(reference, pieces), np.array_split(degraded, pieces)):
        try:
            scores.append(float(pesq_module.pesq(RATE, ref, deg, "wb")))
        # PesqError (a RuntimeError): no utterances, shorter than 1/4 s, out of memory. ValueError:
        # raised from inside the wrapper for a silent degraded signal ("cannot convert float NaN").
        except (pesq_module.PesqError, ValueError):
            continue
    return float(np.mean(scores)) if scores else math.nan


def _visqol_moslqo(reference: np.ndarray, degraded: np.ndarray) -> float:
    try:
        api, _ = _visqol()
    except ImportError:
        return math.nan
    try:
        return float(api.measure_from_arrays(reference, degraded, RATE).moslqo)
    # IndexError: visqol-python 3.8 indexes an empty patch list when the reference is too short
    # for one patch. ValueError: an empty signal. Silence is not an error there: it returns NaN.
    except (IndexError, ValueError):
        return math.nan


def middle(x: np.ndarray, max_seconds: float | None, rate: int = RATE) -> np.ndarray:
    """The middle ``max_seconds`` of ``x`` (all of it when shorter, or when ``max_seconds`` is None or 0)."""
    if max_seconds is not None and max_seconds < 0:
        raise ValueError(f"max_seconds must be 0 (everything) or more, got {max_seconds:g}")
    n = round(max_seconds * rate) if max_seconds else len(x)
    if n >= len(x):
        return x
    start = (len(x) - n) // 2
    return x[start : start + n]


def perceptual_scores(reference: np.ndarray, degraded: np.ndarray, rate: int = RATE, max_seconds: float | None = None) -> dict[str, float]:
    """``{"visqol": MOS-LQO, "pesq_wb": MOS-LQO}`` of ``degraded`` against ``reference``.

    Both mono, the same length, float in [-1, 1] at 16 kHz (score 16-bit outputs, as metrics.md
    asks). ``max_seconds``: score only the middle that long of both (ViSQOL is slow on long files).
    PESQ on more than ``PESQ_MAX_SECONDS`` is a mean over segments (module docstring). NaN for a
    score that is not installed or cannot score this file. Raises ValueError for another rate, a
    shape mismatch or a non-finite sample.
    """
    if rate != RATE:
        raise ValueError(f"perceptual scores are defined at {RATE} Hz here, got {rate} Hz: resample both signals to {RATE} Hz first")
    ref = np.asarray(reference, dtype=np.float64)
    deg = np.asarray(degraded, dtype=np.float64)
    if ref.ndim != 1 or ref.shape != deg.shape:
        raise ValueError(f"need two mono signals of one length, got shapes {ref.shape} and {deg.shape}")
    if not (np.isfinite(ref).all() and np.isfinite(deg).all()):
        raise ValueError("reference or degraded holds NaN or infinite samples")
    ref, deg = middle(ref, max_seconds, rate), middle(deg, max_seconds, rate)
    with np.errstate(all="ignore"):  # both packages divide by zero on silence before giving up
        return {"visqol": _visqol_moslqo(ref, deg), "pesq_wb": _pesq_wb(ref, deg)}
