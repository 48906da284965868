"""The ``bwe`` model family (:mod:`audio_superres.models.bwe`): lengths, the low band it must keep,
training signals, dtypes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_superres.models.bwe import BandwidthExtender, sinc_kernel, sinc_upsample
from audio_superres.models.losses import training_loss
from audio_superres.models.registry import build_model
from audio_superres.pipeline.evaluation.baselines import upsample_sinc
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import ModelSettings

FACTOR = 4


TINY = {"hidden": 32, "blocks": 2}


def tiny(seed: int = 0, **changes) -> BandwidthExtender:
    torch.manual_seed(seed)
    return build_model(ModelSettings(name="bwe", bwe={**TINY, **changes}), FACTOR)


def speech_pair(seconds: float, seed: int, method: str = "soxr") -> tuple[np.ndarray, np.ndarray]:
    """(high-res, low-res) generated speech."""
    y = synth_speech(seconds, 16000, seed=seed)
    return y, make_lowres(y, FACTOR, method)


def band_error(estimate: np.ndarray, reference: np.ndarray, below_hz: float, sample_rate: int = 16000) -> float:
    """Relative L2 distance of the two signals' spectra below ``below_hz``."""
    freqs = np.fft.rfftfreq(len(reference), 1 / sample_rate)
    a, b = np.fft.rfft(estimate)[freqs < below_hz], np.fft.rfft(reference)[freqs < below_hz]
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_registered_as_bwe():
    assert isinstance(build_model(ModelSettings(name="bwe", bwe={"hidden": 16, "blocks": 1}), FACTOR), BandwidthExtender)


@pytest.mark.parametrize("n", [1, 7, 999, 8000])
def test_output_is_factor_times_longer_for_any_length(n):
    model = tiny().eval()
    with torch.no_grad():
        y = model(0.1 * torch.randn(2, 1, n))
    assert y.shape == (2, 1, n * FACTOR)
    assert torch.isfinite(y).all()


def test_rejects_a_clip_without_its_channel_axis():
    with pytest.raises(ValueError, match=r"\(batch, 1, n\)"):
        tiny()(torch.zeros(2, 100))


def test_rejects_an_n_fft_the_low_band_does_not_divide():
    with pytest.raises(ValueError, match="n_fft"):
        tiny(n_fft=500)


def test_sinc_upsampling_keeps_the_samples_and_reproduces_an_in_band_tone():
    low_rate = 4000
    t = np.arange(800) / low_rate
    x = torch.tensor(np.sin(2 * np.pi * 1234.0 * t), dtype=torch.float32)[None]
    y = sinc_upsample(x, sinc_kernel(FACTOR))[0].numpy()
    assert len(y) == 800 * FACTOR
    np.testing.assert_array_equal(y[::FACTOR], x[0].numpy())  # sample k sits at k * factor: no delay
    t_high = np.arange(len(y)) / (low_rate * FACTOR)
    middle = slice(400, -400)  # away from the zero-padded edges
    np.testing.assert_allclose(y[middle], np.sin(2 * np.pi * 1234.0 * t_high)[middle], atol=2e-3)


def test_untrained_model_returns_the_band_limited_interpolation_and_a_faint_high_band():
    y, lr = speech_pair(2.0, seed=3)
    model = tiny().eval()
    with torch.no_grad():
        out = model(torch.tensor(lr)[None, None])[0, 0].numpy()
    sinc = upsample_sinc(lr, FACTOR, 4000)
    assert band_error(out, sinc, 0.9 * 2000) < 1e-2  # the low band, to -40 dB
    assert band_error(out, sinc, 0.7 * 2000) < 1e-3  # and below keep_below, to -60 dB
    assert np.linalg.norm(out - sinc) / np.linalg.norm(sinc) < 0.03  # what it adds starts far below the signal


def randomize_heads(model, std: float) -> None:
    """Heads with random weights of ``std``, in place of the untrained ones (which add almost nothing)."""
    for p in model.head.parameters():
        p.normal_(0, std)


def test_what_the_heads_add_stays_above_the_kept_band():
    # heads with large random weights: the residual outweighs the signal many times over, but it is
    # made above keep_below * low Nyquist, so the band well below gets a tiny share of it
    _, lr = speech_pair(2.0, seed=4)
    model = tiny().eval()
    with torch.no_grad():
        randomize_heads(model, 0.3)
        x_up = sinc_upsample(torch.tensor(lr)[None], model.kernel)[0].numpy()
        out = model(torch.tensor(lr)[None, None])[0, 0].numpy()
    added = np.fft.rfft(out - x_up)
    freqs = np.fft.rfftfreq(len(out), 1 / 16000)
    assert np.linalg.norm(added) > 3 * np.linalg.norm(np.fft.rfft(x_up))
    share_below = np.sum(np.abs(added[freqs < 0.5 * 2000]) ** 2) / np.sum(np.abs(added) ** 2)
    assert share_below < 1e-4  # -40 dB


def test_nearly_gain_equivariant():
    _, lr = speech_pair(1.0, seed=5)
    model = tiny().eval()
    with torch.no_grad():
        randomize_heads(model, 0.05)
        x = torch.tensor(lr)[None, None]
        loud, quiet = model(x)[0, 0], model(0.1 * x)[0, 0]
    assert torch.linalg.vector_norm(quiet * 10 - loud) / torch.linalg.vector_norm(loud) < 0.02


def test_training_losses_are_finite_differentiable_scalars():
    y, lr = speech_pair(1.0, seed=6)
    model = tiny()
    pred = model(torch.tensor(lr)[None, None])
    terms = model.training_losses(pred, torch.tensor(y)[None, None])
    assert set(terms) == {"lsd", "snr_hinge", "phase"}
    for name, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), name
        assert value.requires_grad, name
    sum(terms.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_tiny_model_overfits_one_clip_of_speech(one_thread):
    y, lr = speech_pair(0.25, seed=10)
    target, x = torch.tensor(y)[None, None], torch.tensor(lr)[None, None]
    model = tiny(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(200):
        loss, terms = training_loss(model(x), target, 1.0, 0.0, model)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append((loss.item(), terms["lsd"].item()))
    first, last = history[0], np.mean(history[-5:], axis=0)
    # the log-spectral part has a floor (the fine structure of noise, which a tiny model does not
    # memorise), about a third of where it starts; two-fold in 200 steps leaves room for the seed
    assert last[0] < first[0] / 2  # the whole objective
    assert last[1] < first[1] / 2  # and its log-spectral part, which the metric scores


def test_runs_under_bf16_autocast_with_the_low_band_still_exact():
    _, lr = speech_pair(1.0, seed=9)
    model = tiny().eval()
    with torch.no_grad():
        randomize_heads(model, 0.05)
        x = torch.tensor(lr)[None, None]
        full = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(x)
    assert half.dtype == torch.float32 and torch.isfinite(half).all()
    out, ref = half[0, 0].numpy(), full[0, 0].numpy()
    assert band_error(out, ref, 0.5 * 2000) < 1e-3  # the signal path is float32 whatever the autocast
    assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 0.05


def test_deterministic_in_eval_mode():
    _, lr = speech_pair(0.5, seed=12)
    model = tiny().eval()
    x = torch.tensor(lr)[None, None].repeat(3, 1, 1)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    assert torch.equal(first[0], first[2])  # and independent of the other rows of the batch


@pytest.mark.parametrize("changes", [{}, {"n_fft": 256, "hop": 64}, {"hop": 130}])
def test_its_image_shortcut_gives_torch_stft_bins(changes):
    # the forward pass takes the image's spectrum from a shorter DFT of the low-rate frames, tiled
    # (when frames start on the low-rate grid; else from the zero-stuffed signal): torch.stft's numbers
    model = tiny(**changes).eval()
    _, lr = speech_pair(0.7, seed=3)
    x = torch.tensor(lr)[None].float()
    image = torch.nn.functional.pad(x.unsqueeze(-1), (0, FACTOR - 1)).reshape(1, -1)
    want = model._stft(image)[:, model.keep_bins :]
    got = model._image_spectrum(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()))
