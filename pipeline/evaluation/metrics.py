"""Quality metrics, exactly as ``shared/docs/metrics.md`` defines them (numpy, no epsilon tricks).

* ``snr(y, y_hat) = 20 log10(||y|| / ||y - y_hat||)`` over the whole signal (no patch averaging).
* ``lsd``: ``P = max(|STFT|^2, 1e-8)`` with n_fft 2048, hop 512, periodic Hann, centred with reflect
  padding; ``mean_t sqrt(mean_f (log10 P_y - log10 P_y_hat)^2)``.
* ``lsd_hf``: the same with the mean over frequency taken only over bins above ``cutoff_hz`` (the
  low-res Nyquist frequency: the band the model invents).
* ``band_energy``: where an SNR goes, band by band (not in metrics.md: a diagnostic).
"""

from __future__ import annotations

import numpy as np

N_FFT = 2048
HOP = 512


def snr(y: np.ndarray, y_hat: np.ndarray) -> float:
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    if y.shape != y_hat.shape:
        raise ValueError(f"reference and estimate differ in shape: {y.shape} vs {y_hat.shape}")
    err = np.linalg.norm(y - y_hat)
    return float("inf") if err == 0 else float(20 * np.log10(np.linalg.norm(y) / err))


def power_spectrogram(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """``max(|STFT(x)|^2, 1e-8)``, shape (frames, n_fft // 2 + 1)."""
    x = np.asarray(x, np.float64)
    pad = n_fft // 2
    mode = "reflect" if len(x) > pad else "constant"  # reflect needs more samples than the padding
    x = np.pad(x, pad, mode=mode)
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n_frames]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as librosa / torch
    spec = np.fft.rfft(frames * window, axis=-1)
    return np.maximum(np.abs(spec) ** 2, 1e-8)


def lsd(y: np.ndarray, y_hat: np.ndarray, sample_rate: int | None = None, cutoff_hz: float | None = None) -> float:
    """Log-spectral distance; with ``cutoff_hz`` (and ``sample_rate``), over the bins above it only."""
    if np.shape(y) != np.shape(y_hat):
        raise ValueError(f"reference and estimate differ in shape: {np.shape(y)} vs {np.shape(y_hat)}")
    diff = np.log10(power_spectrogram(y)) - np.log10(power_spectrogram(y_hat))
    if cutoff_hz is not None:
        if sample_rate is None:
            raise ValueError("lsd with cutoff_hz needs sample_rate")
        freqs = np.arange(diff.shape[1]) * sample_rate / N_FFT
        diff = diff[:, freqs > cutoff_hz]
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=1))))


def score(y: np.ndarray, y_hat: np.ndarray, sample_rate: int, low_rate: int) -> dict[str, float]:
    """SNR, LSD and LSD-HF (above ``low_rate / 2``) of one reconstruction."""
    return {"snr": snr(y, y_hat), "lsd": lsd(y, y_hat), "lsd_hf": lsd(y, y_hat, sample_rate, low_rate / 2)}


def band_energy(y: np.ndarray, y_hat: np.ndarray, sample_rate: int, edges_hz: tuple[float, ...]) -> list[dict]:
    """Per band ``[edges_hz[i], edges_hz[i + 1])`` of the whole-signal spectrum (the last band
    includes its top edge), as percentages of ``y``'s energy: ``truth`` (``y``'s energy there),
    ``estimate`` (``y_hat``'s), ``cross`` (``Re <y_hat, y>``) and ``error`` (``|y_hat - y|^2``; by
    Parseval the bands' errors sum to the whole error, so ``snr = -10 log10(sum(error) / 100)``).
    An estimate adds error in a band unless ``estimate <= 2 * cross``: an uncorrelated band of the
    right level doubles the error there."""
    y, y_hat = np.asarray(y, np.float64), np.asarray(y_hat, np.float64)
    if y.shape != y_hat.shape:
        raise ValueError(f"reference and estimate differ in shape: {y.shape} vs {y_hat.shape}")
    spec, spec_hat = np.fft.rfft(y), np.fft.rfft(y_hat)
    # a one-sided spectrum: every bin but DC (and Nyquist, for an even length) stands for two
    weight = np.full(len(spec), 2.0)
    weight[0] = 1.0
    if len(y) % 2 == 0:
        weight[-1] = 1.0
    freqs = np.fft.rfftfreq(len(y), 1.0 / sample_rate)
    total = np.sum(weight * np.abs(spec) ** 2)
    rows = []
    for i, (low, high) in enumerate(zip(edges_hz[:-1], edges_hz[1:])):
        band = (freqs >= low) & ((freqs <= high) if i == len(edges_hz) - 2 else (freqs < high))
        t, e, w = spec[band], spec_hat[band], weight[band]
        rows.append({
            "band": f"{low:g}-{high:g}",
            "truth": 100 * np.sum(w * np.abs(t) ** 2) / total,
            "estimate": 100 * np.sum(w * np.abs(e) ** 2) / total,
            "cross": 100 * np.sum(w * (e * np.conj(t)).real) / total,
            "error": 100 * np.sum(w * np.abs(e - t) ** 2) / total,
        })  # fmt: skip
    return rows
