"""The two baselines every model is reported beside (``shared/docs/metrics.md``):

* ``sinc``: soxr HQ resampling of the low-res signal back to the high rate (band-limited
  interpolation: the high band stays empty);
* ``cubic``: a cubic spline through the low-res samples, placed at every ``factor``-th high-res
  sample (the baseline of Kuleshov et al.).

Both return exactly ``factor * len(lr)`` samples, aligned with the high-res signal that the low-res one
was made from (sample ``k`` of the low-res signal sits at high-res sample ``k * factor``).
"""

from __future__ import annotations

import numpy as np
import scipy.interpolate
import soxr


def upsample_sinc(lr: np.ndarray, factor: int, low_rate: int) -> np.ndarray:
    lr = np.asarray(lr, np.float32)
    y = soxr.resample(lr, low_rate, low_rate * factor, quality="HQ")
    n = len(lr) * factor
    return np.pad(y, (0, max(0, n - len(y))))[:n].astype(np.float32)


def upsample_cubic(lr: np.ndarray, factor: int) -> np.ndarray:
    lr = np.asarray(lr, np.float64)
    n = len(lr) * factor
    if len(lr) < 2:
        return np.repeat(lr, factor).astype(np.float32)
    spline = scipy.interpolate.CubicSpline(np.arange(len(lr)) * factor, lr, bc_type="not-a-knot" if len(lr) > 3 else "natural")
    return spline(np.arange(n)).astype(np.float32)


def upsample_baseline(name: str, lr: np.ndarray, factor: int, low_rate: int) -> np.ndarray:
    if name == "sinc":
        return upsample_sinc(lr, factor, low_rate)
    if name == "cubic":
        return upsample_cubic(lr, factor)
    raise ValueError(f"unknown baseline {name!r}; choose sinc or cubic")
