"""The loss terms of ``bwe`` (:class:`models.bwe.BandwidthExtender.training_losses`): the log-spectral
distance as scored, an SNR hinge against the band-limited input, and an anti-wrapping phase loss."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_PCM16_NOISE_VAR = (2.0**-15) ** 2 / 12
METRIC_N_FFT, METRIC_HOP = 2048, 512  # pipeline.evaluation.metrics.lsd


def snr_hinge(pred: torch.Tensor, target: torch.Tensor, factor: int, margin_db: float) -> torch.Tensor:
    """Soft hinge on ``SNR(sinc) + margin - SNR(pred)`` per clip, in decibels / 10.

    The sinc baseline's error is the target's energy above the low-res Nyquist frequency (its low
    band is right), so its SNR is known from the target alone."""
    spectrum = torch.fft.rfft(target, dim=-1)
    cutoff = spectrum.shape[-1] // factor
    weight = torch.ones(spectrum.shape[-1], device=spectrum.device)
    weight[1:] = 2.0  # one-sided spectrum: count the mirrored half (Parseval)
    high = (spectrum[:, cutoff:].abs().pow(2) * weight[cutoff:]).sum(-1) / target.shape[-1]
    energy = target.pow(2).sum(-1)
    eps = 1e-4 * energy + 1e-9  # a silent clip or empty high band has no SNR to protect
    error = (target - pred).pow(2).sum(-1)
    excess_db = 10 * torch.log10((error + eps) / (high + eps)) + margin_db
    return (F.softplus(excess_db) / 10).mean()


def phase_loss(s_hat: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Anti-wrapping phase distance (instantaneous phase, and its change across time and across
    frequency) between the STFTs of prediction and target (the bins above ``keep_bins``), weighted
    by the target's magnitude so that noise bins with no meaningful phase do not count."""
    weight = s.abs()
    total = weight.sum().clamp_min(1e-9)
    product = s_hat * s.conj()
    # angle() has no gradient at 0 (digital silence in the target or the prediction): a NaN
    # there, times a zero weight, is still NaN; those bins carry no phase, so give them 1
    product = torch.where(product.abs().detach() > 0, product, torch.ones_like(product))
    d = torch.angle(product)  # wrapped phase error, in (-pi, pi]
    instantaneous = (weight * d.abs()).sum() / total
    # its change over time (instantaneous frequency) and over frequency (group delay)
    w_time = torch.minimum(weight[..., 1:], weight[..., :-1])
    w_freq = torch.minimum(weight[:, 1:], weight[:, :-1])
    temporal = (w_time * _wrapped(d[..., 1:] - d[..., :-1])).sum() / w_time.sum().clamp_min(1e-9)
    spectral = (w_freq * _wrapped(d[:, 1:] - d[:, :-1])).sum() / w_freq.sum().clamp_min(1e-9)
    return (instantaneous + temporal + spectral) / (3 * math.pi)


def _wrapped(phase: torch.Tensor) -> torch.Tensor:
    """``|phase|`` after wrapping into [-pi, pi] (the anti-wrapping function of AP-BWE)."""
    return (phase - 2 * math.pi * torch.round(phase / (2 * math.pi))).abs()


def lsd_loss(pred: torch.Tensor, target: torch.Tensor, n_fft: int, hop: int, from_bin: int) -> torch.Tensor:
    """Log-spectral distance as ``models.metrics.lsd`` (log10 power, sqrt of the mean over bins per
    frame, mean over frames) over bins ``from_bin`` and up, with the 16-bit noise floor's expected
    power added to the prediction (what writing it as 16-bit PCM does)."""
    window = torch.hann_window(n_fft, device=pred.device)
    floor = _PCM16_NOISE_VAR * float(window.pow(2).sum())

    def power(x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
        s = torch.stft(x, n_fft, hop, window=window, center=True, pad_mode=mode, return_complex=True)[:, from_bin:]
        return s.real.pow(2) + s.imag.pow(2)

    p_hat = power(pred) + floor
    p = power(target).clamp_min(1e-8)
    diff = torch.log10(p_hat) - torch.log10(p)
    return torch.sqrt(diff.pow(2).mean(dim=1) + 1e-6).mean()
