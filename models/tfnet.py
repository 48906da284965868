"""``tfnet``: the time-frequency network of Lim, Yeh, Xu, Do and Hasegawa-Johnson, "Time-frequency
networks for audio super-resolution" (ICASSP 2018).

Two branches see the interpolated low-res clip ``x`` (``models.interpolation``), then are fused:

* time branch: an AudioUNet (``models.audiounet.UNet1d`` plus the interpolation residual), giving a
  waveform ``z``;
* spectral branch: the STFT magnitude of ``x`` goes through the "spectral replicator", which copies
  the low band (bins 1 .. (n_fft/2) / factor, up to the low-res Nyquist frequency) into the empty
  high band, tiled ``factor`` times over the non-DC bins; an AudioUNet body runs along the frequency
  axis of each frame (frames folded into the batch) and its output is added to the replicated
  magnitude (a residual, so an untrained branch predicts the classic "spectral folding"), giving a
  magnitude ``m``. The DC bin is passed through, as in the paper;
* spectral fusion: ``M = w * |F(z)| + (1 - w) * m`` with one trainable weight per frequency bin,
  ``w = (tanh(v) + 1) / 2`` (the authors' clamp), and the output is ``F^-1(M * exp(i * angle(F(z))))``:
  the time branch supplies the phase. ``w`` starts at 0.99 in every bin (the authors' code draws it
  at random): the replicated low band is far louder than the real high band, and an even mix starts
  the network near 2 dB SNR, far below the interpolation it is given; at 0.99 an untrained TFNet is
  within 0.1 dB of its time branch, which starts at the interpolation as an untrained AudioUNet does.
  Adam scales each parameter's step, so the small initial share of the spectral branch does not
  slow its learning.

The paper's ``F`` is one DFT of the whole training patch, which ties the network to one input length.
Here ``F`` is an STFT, so any length works: n_fft 512 (32 ms at 16 kHz: 31.25 Hz bins, and 512 / 2 =
256 non-DC bins divide evenly for factors 2, 4, 8), hop 256 (16 ms, 50% overlap, the periodic Hann
window's constant-overlap-add hop), centred with zero padding (reflect padding would need more
samples than half a window), orthonormal scaling (``normalized=True``) so magnitudes sit near
waveform scale. The inverse STFT is cut to the input length, so the output stays sample-aligned.
Per second of 16 kHz audio the spectral branch sees 63 frames of 256 bins, about as many positions
as the time branch's 16000 samples, so the network costs about twice an AudioUNet of the same size.

The STFT, the fusion and the inverse run in float32 even under autocast (``torch.stft`` has no
bfloat16 kernel, and the phase division needs the range); the two U-Net bodies follow autocast.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .audiounet import UNet1d
from .interpolation import Interpolator

N_FFT = 512
HOP = 256
INITIAL_TIME_WEIGHT = 0.99  # w at initialisation, every bin (see the module docstring)


def replicate_low_band(magnitude: Tensor, factor: int) -> Tensor:
    """``(batch, n_fft/2 + 1, frames)`` -> ``(batch, n_fft/2, frames)``: the non-DC bins, with the low
    band (the first ``(n_fft/2) // factor`` of them) tiled over the whole range."""
    bins = magnitude.shape[1] - 1
    low = bins // factor
    if low < 1:
        raise ValueError(f"factor {factor} leaves no low band in {bins} STFT bins")
    return magnitude[:, 1 : low + 1].repeat(1, math.ceil(bins / low), 1)[:, :bins]


class TFNet(nn.Module):
    """Low-res ``(batch, 1, n)`` -> high-res ``(batch, 1, n * factor)``: time and spectral branches, fused."""

    # train in TF32, not bf16 autocast: one paper-size training step (batch 16 of 2 s) on an H200
    # took 947 ms under bf16 and 119 ms in TF32 (audiounet; tfnet 2180 ms under bf16)
    train_bf16 = False

    def __init__(self, factor: int, width: int = 32, depth: int = 4, interpolation: str = "cubic", dropout: float = 0.5):
        super().__init__()
        self.factor = factor
        self.interpolate = Interpolator(factor, interpolation)
        self.time_branch = UNet1d(1, 1, width, depth, dropout)
        self.spectral_branch = UNet1d(1, 1, width, depth, dropout)
        self.fusion_logit = nn.Parameter(torch.full((N_FFT // 2 + 1, 1), math.atanh(2 * INITIAL_TIME_WEIGHT - 1)))
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def _stft(self, x: Tensor) -> Tensor:
        return torch.stft(x[:, 0], N_FFT, HOP, window=self.window, center=True, pad_mode="constant", normalized=True, return_complex=True)

    def fusion_weight(self) -> Tensor:
        """``w`` per frequency bin, in [0, 1]: the share of the time branch's magnitude."""
        return (torch.tanh(self.fusion_logit) + 1) / 2

    def forward(self, x: Tensor) -> Tensor:
        base = self.interpolate(x)  # float32 even under autocast
        n = base.shape[-1]
        z = base + self.time_branch.forward_any_length(base).float()

        no_autocast = torch.autocast(device_type=base.device.type, enabled=False)
        with no_autocast:
            magnitude = self._stft(base).abs()
            replicated = replicate_low_band(magnitude, self.factor)
        b, bins, frames = replicated.shape
        per_frame = replicated.transpose(1, 2).reshape(b * frames, 1, bins)
        high = per_frame + self.spectral_branch.forward_any_length(per_frame).float()
        high = high.reshape(b, frames, bins).transpose(1, 2)

        with no_autocast:
            m = torch.cat([magnitude[:, :1], high], dim=1)  # DC passed through
            spec_z = self._stft(z)
            mag_z = spec_z.abs()
            w = self.fusion_weight()
            fused = w * mag_z + (1 - w) * m
            # exp(i angle(F(z))) as F(z) / |F(z)|: angle() has no useful gradient at 0; the clamp
            # only matters for bins that are zero to 1e-8, whose phase is meaningless anyway
            phase = spec_z / mag_z.clamp_min(1e-8)
            y = torch.istft(fused * phase, N_FFT, HOP, window=self.window, center=True, normalized=True, length=n)
        return y[:, None]
