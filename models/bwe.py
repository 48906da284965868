"""``bwe``: our bandwidth-extension network. It keeps the low band the input gives and predicts only
what lies above it, in the STFT domain, at a CPU-friendly frame rate.

How a clip goes through it (``forward``):

1. **Band-limited interpolation** to the high rate (Kaiser-windowed sinc, polyphase, zero delay):
   ``x_up``. The output is ``x_up + residual``, and the residual is zero in every STFT bin below
   ``keep_below`` times the low-res Nyquist frequency, so the band the input already holds passes
   through untouched (after an untrained model, or a trained one). Every error in the invented band
   costs waveform SNR: a high band with amplitude ratio ``g`` to the truth and correlation ``rho``
   adds error unless ``g <= 2 rho``, so the low band is never put at risk and the design spends its
   effort on the phase of the high band.
2. **STFT** of ``x_up`` (Hann ``n_fft``, hop ``hop``). The trunk sees only the bins up to the low-res
   Nyquist frequency (the rest of ``x_up``'s spectrum is empty by construction), as per-frame
   level-normalised log magnitude, phase as a shrunk unit phasor, and the phase advance from the
   previous frame (instantaneous frequency, i.e. the pitch), plus the frame's level relative to its
   neighbours. Every feature is relative, so the model is (nearly) gain-equivariant: a quiet
   recording is treated as a loud one.
3. **Trunk**: a ConvNeXt stack over time (depthwise conv across frames, channels = ``hidden``), as
   in AP-BWE (Lu et al., 2024) but one shared stream and far narrower, for CPU speed.
4. **Heads** (one linear layer), each over its own band of bins from ``keep_below`` up:

   * a bounded log **gain** on the input spectrum, up to just past the low-res Nyquist frequency, to
     restore the anti-aliasing filter's roll-off (the input's phase is right there);
   * complex **masks on harmonic excitations**, up to twice the low-res Nyquist frequency (above
     it, on clean input, the measured correlation of the true phase with the input's is nil, and a
     mask would only cost time): the spectra of ``x_up ** p`` (``p = 2 .. excitation + 1``). A
     power of a band-limited signal is band-limited to ``p`` times its band (no aliasing for ``p <= factor``),
     and is periodic with the same pitch period, with harmonics whose phases follow the signal's
     own: a time shift of the input turns every harmonic of both by the same ``k * omega * tau``.
     So the mask that maps excitation to true high band is smooth in time and does not have to
     know the absolute phase, which a small network cannot compute from per-bin phasors. This is
     what lets the invented harmonics correlate with the truth (SNR); without them, held-out SNR
     fell from 0.3 dB above sinc's to 0.1 dB below it;
   * a complex **mask on the image**, over the whole band: the input zero-stuffed to the high rate,
     whose spectrum above the low-res Nyquist frequency is the low band mirrored and repeated
     (classic spectral folding). For an aliased input (``subsample``) that puts the folded-down
     high band back where it came from, which is why cubic interpolation beats sinc on such input:
     with it, held-out SNR on such input went from 9.7 to 10.6 dB (cubic 10.1, sinc 9.4), and fell
     back to 10.0 when the mask stopped at 4 kHz;
   * a **free** magnitude and phase over the whole band (phase as ``atan2`` of two outputs, as
     AP-BWE), for what the excitations do not explain: fricatives, breath, noise.

   The gain and masks start at zero and the free magnitude well below a typical high band, so an
   untrained model returns its band-limited interpolation plus a faint high band.
5. **iSTFT** of the residual, added to ``x_up``.

``training_losses`` adds terms this design relies on: the log-spectral distance exactly as
``models.metrics.lsd`` scores it (n_fft 2048) and at the model's own finer resolution, an SNR hinge
that penalises a clip whose SNR falls below that of its own band-limited version (the sinc
baseline) plus a margin, and a magnitude-weighted anti-wrapping phase loss on the high band.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .bwe_losses import METRIC_HOP, METRIC_N_FFT, erb_bands, loudness_overshoot, lsd_loss, phase_loss, power, snr_hinge

# 16-bit PCM quantisation noise (step 2**-15, variance step**2 / 12) is the floor of every scored
# spectrum, since outputs are written and scored as 16-bit; the log losses add its expected power so
# that training does not chase detail below what the file can hold
_LEVEL_EPS = 1e-6  # STFT magnitude floor for levels and logs: well below a 16-bit file's noise floor (~1e-4)
_MAG_SCALE = 4.0  # the free log-magnitude is 4x its head's output: 4x the step size where it must travel furthest
_LEVEL_CONTEXT = 51  # frames (odd; +-0.25 s at hop 160) over which the relative frame level is taken


def sinc_kernel(factor: int, half_width: int = 32, beta: float = 8.0) -> torch.Tensor:
    """Polyphase weights ``(factor, 1, 2 * half_width + 1)`` of a Kaiser-windowed sinc low-pass at the
    low-res Nyquist frequency, for ``F.conv1d`` on the low-rate signal (phase ``p`` gives high-rate
    samples ``k * factor + p``). Phase 0 is a unit impulse: input samples pass through unchanged."""
    taps = np.arange(-half_width * factor, half_width * factor + 1)
    window = np.kaiser(len(taps), beta)
    h = np.sinc(taps / factor) * window  # gain ``factor`` at DC once zeros are interleaved: sum over a phase is ~1
    k = np.arange(2 * half_width + 1)
    # conv1d correlates: weight[p, u] multiplies x[m + u - half_width] for output m, i.e. h[(half_width - u) * factor + p]
    weights = np.stack([np.interp((half_width - k) * factor + p, taps, h, left=0.0, right=0.0) for p in range(factor)])
    weights[0] = 0.0
    weights[0, half_width] = 1.0  # sinc's zeros at the integers, exactly (np.sinc leaves 1e-17)
    return torch.tensor(weights, dtype=torch.float32).unsqueeze(1)


def sinc_upsample(x: torch.Tensor, kernel: torch.Tensor, block: int = 16384) -> torch.Tensor:
    """``(batch, n)`` at the low rate -> ``(batch, n * factor)``, zero-padded at the edges (no delay)."""
    factor, _, width = kernel.shape
    n = x.shape[-1]
    padded = F.pad(x, (width // 2, width // 2))
    phases = kernel[:, 0].t()  # (width, factor)
    # each input position's window of ``width`` samples times the phases gives the output already
    # interleaved, (batch, n, factor): 2.4x faster on a CPU than a one-channel conv1d, whose (batch,
    # factor, n) output then needs a transposing copy with a 4-wide inner loop. In blocks, because the
    # windows of a whole 20 s input are copied out at ``width`` floats a sample (43 MB at 8 kHz, out of
    # cache: 8x slower than in blocks of 16384 samples)
    pieces = [torch.matmul(padded[:, s : min(n, s + block) + width - 1].unfold(-1, width, 1), phases) for s in range(0, n, block)]
    return torch.cat(pieces, dim=1).reshape(x.shape[0], -1)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over frames, then a per-frame MLP, residual; tensors are (batch, frames, channels)."""

    def __init__(self, dim: int, kernel: int = 7, mult: int = 3, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mult * dim)
        self.fc2 = nn.Linear(mult * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        conv = self.dwconv
        if h.is_cuda:  # cuDNN builds a kernel for each new shape of the channels-last form below: ~0.2 s a file
            y = conv(h.transpose(1, 2)).transpose(1, 2)
        else:
            # the depthwise conv as a 2-D one over (batch, channels, 1, frames) in channels-last order, which
            # is ``h``'s own memory: no transposing copies either side (on a CPU 13x faster than conv1d on
            # ``h.transpose(1, 2)``, whose copies were a tenth of the forward pass); same weights
            y = F.conv2d(h.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias, padding=(0, conv.padding[0]), groups=conv.groups)
            y = y.squeeze(2).transpose(1, 2)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return h + self.gamma * y


class BandwidthExtender(nn.Module):
    # bfloat16 autocast touches only the trunk: the signal path (interpolation, STFT bins, masks,
    # iSTFT) runs in float32, so ``upsampling.bf16=auto`` turns it on (held-out scores unchanged)
    bf16_safe = True
    # what is added to the band-limited input is scaled by this at inference (upsampling.band_gain):
    # 1 as trained; lower trades LSD and ViSQOL for PESQ (benchmarks/bench_tradeoff.py)
    band_gain = 1.0

    def cast_trunk(self, dtype: torch.dtype) -> None:
        """Hold the trunk and heads in ``dtype`` (bfloat16 for inference: ~8% faster on a CPU than
        autocast, which casts activations and weights on every call); the signal path stays float32."""
        for module in (self.pre, self.pre_norm, self.blocks, self.post_norm, self.head):
            module.to(dtype)

    def __init__(
        self,
        factor: int,
        hidden: int = 192,
        blocks: int = 6,
        n_fft: int = 512,
        hop: int = 160,
        keep_below: float = 0.75,
        excitation: int = 3,
        lsd_weight: float = 1.0,
        snr_weight: float = 4.0,
        snr_margin_db: float = 1.0,
        phase_weight: float = 0.5,
        overshoot_weight: float = 0.0,
        overshoot_bands: int = 16,
    ):
        super().__init__()
        self.factor = factor
        self.n_fft = n_fft
        self.hop = hop
        if hop > n_fft:
            raise ValueError(f"model.bwe.hop ({hop}) must be at most n_fft ({n_fft})")
        if self.n_fft % (2 * factor):
            raise ValueError(f"model.bwe.n_fft ({self.n_fft}) must be a multiple of 2 * factor ({2 * factor})")
        self.n_bins = self.n_fft // 2 + 1
        self.in_bins = self.n_fft // (2 * factor) + 1  # bins 0 .. low-res Nyquist
        self.keep_bins = int(math.floor(keep_below * (self.in_bins - 1)))  # passed through untouched
        self.out_bins = self.n_bins - self.keep_bins
        self.powers = tuple(range(2, excitation + 2))
        self.lsd_weight = lsd_weight
        self.snr_weight = snr_weight
        self.snr_margin_db = snr_margin_db
        self.phase_weight = phase_weight
        self.overshoot_weight = overshoot_weight

        self.register_buffer("kernel", sinc_kernel(factor), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        # critical bands over the bins the model writes, for the loudness overshoot loss (training only)
        bands = erb_bands(self.keep_bins, self.n_bins, self.n_fft, overshoot_bands) if overshoot_weight > 0 else None
        self.register_buffer("loss_bands", bands, persistent=False)

        n_features = 5 * self.in_bins + 1
        self.pre = nn.Conv1d(n_features, hidden, 3, padding=1)
        self.pre_norm = nn.LayerNorm(hidden, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock(hidden, layer_scale=1.0 / blocks) for _ in range(blocks)])
        self.post_norm = nn.LayerNorm(hidden, eps=1e-6)
        # one linear layer for every head, each over its own band of bins from keep_bins up: the
        # input gain up to just past the low-res Nyquist frequency (the anti-aliasing roll-off); the
        # power masks (2 each) up to twice that frequency (above it, on clean input, the true phase no
        # longer follows the input's: measured correlation ~0); the image mask (2) and the free part
        # (3) everywhere (an aliased input folds the whole high band down, and the image unfolds it)
        self.gain_bins = min(self.n_bins, self.in_bins + self.in_bins // 8) - self.keep_bins
        self.mask_bins = min(self.n_bins, 2 * (self.in_bins - 1) + 1) - self.keep_bins
        self.head_sizes = (self.gain_bins, 2 * len(self.powers) * self.mask_bins, 2 * self.out_bins, 3 * self.out_bins)
        self.head = nn.Linear(hidden, sum(self.head_sizes))
        # the STFT bins the forward pass reads: the input's up to the gain band, the powers' up to the mask band
        self.dft_bins = max(self.in_bins, self.keep_bins + self.gain_bins)
        # the image (the input zero-stuffed) has a spectrum that repeats every low_rate: when frames start
        # on the low-rate grid, it is a factor-times-shorter DFT of the low-rate frames, tiled
        self.image_from_low_rate = self.hop % factor == 0
        bins = torch.arange(self.keep_bins, self.n_bins) % (self.n_fft // factor)
        self.register_buffer("image_index", torch.minimum(bins, self.n_fft // factor - bins), persistent=False)
        self.register_buffer("image_conj", bins > self.n_fft // (2 * factor), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # gain 0 and masks 0: the input passes as it is. The free magnitude starts on a slope 13 dB
        # below the mean log(|bin| / frame level) of real speech (-3 at 1.5 kHz to -6 at 8 kHz): quiet
        # enough to cost no SNR, near enough that the log losses need not climb 60 dB bias-step by
        # bias-step. The phase outputs keep their random start so that atan2 has a gradient.
        masked = sum(self.head_sizes[:3])
        weight, bias = self.head.weight.detach(), self.head.bias.detach()
        weight[:masked].zero_()
        weight[masked : masked + self.out_bins] /= _MAG_SCALE
        bias[masked : masked + self.out_bins] = torch.linspace(-4.5, -7.5, self.out_bins) / _MAG_SCALE

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x, self.n_fft, self.hop, window=self.window, center=True, pad_mode="constant", return_complex=True)

    def _bins(self, x: torch.Tensor, low: int, high: int) -> torch.Tensor:
        """Bins ``low .. high`` of ``self._stft(x)``, ``(batch, high - low, frames)``. (A bank of windowed
        DFT rows applied as a strided convolution, which an earlier torch ran faster, took 2.3-3.7x as
        long on a CPU with torch 2.13 as the whole FFT.)"""
        return self._stft(x)[:, low:high]

    def _image_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``self._stft(image)[:, keep_bins:]`` of the image: the low-rate ``x`` ``(batch, n)`` zero-stuffed."""
        f = self.factor
        if not self.image_from_low_rate:
            image = F.pad(x.unsqueeze(-1), (0, f - 1)).reshape(x.shape[0], -1)
            return self._stft(image)[:, self.keep_bins :]
        size = self.n_fft // f
        # image frame t holds x at every factor-th sample: a size-point DFT, window taken every factor-th tap
        frames = F.pad(x, (size // 2, size // 2)).unfold(-1, size, self.hop // f)  # (batch, frames, size)
        low = torch.fft.rfft(frames * self.window[::f], dim=-1).transpose(1, 2)  # (batch, size // 2 + 1, frames)
        tiled = low[:, self.image_index]
        return torch.where(self.image_conj[:, None], tiled.conj(), tiled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != 1:
            raise ValueError(f"expected a (batch, 1, n) low-res clip, got shape {tuple(x.shape)}")
        batch, _, n = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            # the signal path stays float32: the low band must come out as exact as the input
            x_up = sinc_upsample(x.float().reshape(batch, n), self.kernel)
            spec = self._bins(x_up, 0, self.dft_bins)  # (batch, dft_bins, frames)
            features, level = self._features(spec[:, : self.in_bins])
        h = self.pre(features.to(self.pre.weight.dtype))  # a trunk cast to bfloat16 (cast_trunk) takes bfloat16
        h = self.pre_norm(h.transpose(1, 2))
        for block in self.blocks:
            h = block(h)
        h = self.post_norm(h)
        # the head's outputs made straight in (batch, head outputs, frames), the layout the spectra
        # below use: a linear layer's (batch, frames, outputs) read across frames costs a transposing
        # copy of its largest tensor (about a tenth of a CPU forward pass)
        out = torch.bmm(self.head.weight.expand(batch, -1, -1), h.transpose(1, 2)).add_(self.head.bias[:, None])
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = out.float()
            full = self._residual(x.float().reshape(batch, n), x_up, spec, out, level)
            y = x_up + self.band_gain * torch.istft(full, self.n_fft, self.hop, window=self.window, center=True, length=n * self.factor)
        return y.unsqueeze(1)

    def _features(self, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk input ``(batch, 5 * in_bins + 1, frames)`` and the frame level ``(batch, 1, frames)``."""
        mag = low.abs()
        level = mag.pow(2).mean(dim=1, keepdim=True).sqrt() + _LEVEL_EPS
        log_rel = torch.log(mag + _LEVEL_EPS) - torch.log(level)
        # unit phasor where a bin carries energy, shrunk towards 0 where it is noise
        phasor = low / (mag + 0.1 * level)
        advance = phasor * F.pad(phasor, (1, 0))[..., :-1].conj()  # phase change since the previous frame
        # the frame's level against its neighbourhood (about 1 s): the envelope, without the absolute
        # gain, so that a quiet recording is treated as a loud one
        log_level = torch.log(level)
        context = F.avg_pool1d(log_level, _LEVEL_CONTEXT, stride=1, padding=_LEVEL_CONTEXT // 2, count_include_pad=False)
        features = torch.cat([log_rel / 4, phasor.real, phasor.imag, advance.real, advance.imag, (log_level - context) / 4], dim=1)
        return features, level

    def _residual(self, x: torch.Tensor, x_up: torch.Tensor, spec: torch.Tensor, out: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
        """The complex spectrum ``(batch, n_bins, frames)`` added to ``x_up``: zero below ``keep_bins``
        (``x``: the input at the low rate, ``(batch, n)``). Built in one tensor, term by term, so that no
        term is padded out to the full band (these elementwise passes are a third of a CPU forward)."""
        batch, frames = out.shape[0], out.shape[-1]
        k0, kg, O = self.keep_bins, self.keep_bins + self.gain_bins, self.out_bins
        gain_out, power_out, image_out, free_out = torch.split(out, self.head_sizes, dim=1)

        # the free part: magnitude times the unit phasor of (re, im), i.e. polar(magnitude, atan2(im, re))
        magnitude = level * torch.exp((_MAG_SCALE * free_out[:, :O]).clamp(max=6.0))
        free = torch.complex(free_out[:, O : 2 * O], free_out[:, 2 * O :])
        residual = free * (magnitude / free.abs().clamp_min(1e-30))

        gain = 2.0 * torch.tanh(gain_out / 2.0)  # log gain within +-2 (x0.14 .. x7.4)
        residual[:, : self.gain_bins] += spec[:, k0:kg] * torch.expm1(gain)

        # excitations, each frame scaled to the input frame's level: degree 1 in the input, whatever p
        # (the scale goes on the mask, a real tensor, rather than on the complex excitation)
        exc_image = self._image_spectrum(x)
        scale = level / (power(exc_image).mean(dim=1, keepdim=True).sqrt() + 1e-20)
        residual += torch.complex(image_out[:, :O], image_out[:, O:]) * scale * exc_image
        n_powers = len(self.powers)
        if n_powers:
            powers = torch.stack([x_up.pow(p) for p in self.powers], dim=1).flatten(0, 1)  # (batch * powers, n)
            exc_power = self._bins(powers, k0, k0 + self.mask_bins).view(batch, n_powers, self.mask_bins, frames)
            scale = level.unsqueeze(1) / (power(exc_power).mean(dim=2, keepdim=True).sqrt() + 1e-20)
            mask = power_out.view(batch, n_powers, 2, self.mask_bins, frames)
            residual[:, : self.mask_bins] += (torch.complex(mask[:, :, 0], mask[:, :, 1]) * scale * exc_power).sum(dim=1)
        return F.pad(residual, (0, 0, k0, 0))

    # --- training objective terms -------------------------------------------------------------------

    def training_losses(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Model-specific loss terms (each already weighted by its ``model.*_weight``)."""
        pred = pred.reshape(-1, pred.shape[-1]).float()
        target = target.reshape(-1, target.shape[-1]).float()
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(device_type=pred.device.type, enabled=False):
            if self.lsd_weight > 0:
                terms["lsd"] = self.lsd_weight * 0.5 * (lsd_loss(pred, target, METRIC_N_FFT, METRIC_HOP, 0) + lsd_loss(pred, target, self.n_fft, self.hop, self.keep_bins))
            if self.snr_weight > 0:
                terms["snr_hinge"] = self.snr_weight * snr_hinge(pred, target, self.factor, self.snr_margin_db)
            if self.phase_weight > 0 or self.overshoot_weight > 0:  # both on the bins the model writes
                s_hat, s = self._stft(pred)[:, self.keep_bins :], self._stft(target)[:, self.keep_bins :]
            if self.phase_weight > 0:
                terms["phase"] = self.phase_weight * phase_loss(s_hat, s)
            if self.overshoot_weight > 0:
                terms["overshoot"] = self.overshoot_weight * loudness_overshoot(s_hat, s, self.loss_bands)
        return terms
