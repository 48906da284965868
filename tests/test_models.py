"""The research families (``audiounet``, ``tfnet``) and their parts: subpixel shuffle, torch
interpolation against the numpy baselines, shapes for awkward lengths, learning, eval determinism,
bfloat16 autocast, and the size/cost counters. CPU, tiny models, generated audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from audio_superres.models.audiounet import block_channels, block_kernel_sizes
from audio_superres.models.flops import count_parameters, flops_per_second
from audio_superres.models.interpolation import Interpolator
from audio_superres.models.registry import build_model
from audio_superres.models.subpixel import subpixel_shuffle_1d, subpixel_unshuffle_1d
from audio_superres.models.tfnet import replicate_low_band
from audio_superres.pipeline.evaluation.baselines import upsample_cubic, upsample_sinc
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import ModelSettings

FAMILIES = ("audiounet", "tfnet")
FACTOR = 4


@pytest.fixture(autouse=True)
def one_thread():
    # tiny convolutions gain nothing from threads, and on a shared 2-core machine they lose a lot
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(name: str, **changes) -> nn.Module:
    settings = {"name": name, "width": 4, "depth": 3, **changes}
    torch.manual_seed(0)
    return build_model(ModelSettings(**settings), FACTOR)


def speech_pair(seconds: float, seeds=(1, 2), method: str = "soxr") -> tuple[torch.Tensor, torch.Tensor]:
    """(low-res (batch, 1, n), high-res (batch, 1, n * FACTOR)) from generated speech."""
    hr = np.stack([synth_speech(seconds, 16000, seed=s) for s in seeds])
    lr = np.stack([make_lowres(h, FACTOR, method) for h in hr])
    return torch.tensor(lr)[:, None], torch.tensor(hr)[:, None]


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(ref) / np.linalg.norm(ref - est)))


# --- subpixel shuffle ---------------------------------------------------------------------------


def test_subpixel_shuffle_interleaves_channel_groups_into_time():
    x = torch.arange(12.0).reshape(1, 4, 3)  # channels [0 1 2] [3 4 5] [6 7 8] [9 10 11]
    y = subpixel_shuffle_1d(x, 2)
    assert y.tolist() == [[[0, 3, 1, 4, 2, 5], [6, 9, 7, 10, 8, 11]]]
    assert torch.equal(subpixel_unshuffle_1d(y, 2), x)


def test_subpixel_shuffle_by_four_to_one_channel_and_bad_shapes():
    x = torch.arange(8.0).reshape(1, 4, 2)  # [0 1] [2 3] [4 5] [6 7]
    assert subpixel_shuffle_1d(x, 4).tolist() == [[[0, 2, 4, 6, 1, 3, 5, 7]]]
    with pytest.raises(ValueError, match="divisible by 2"):
        subpixel_shuffle_1d(torch.zeros(1, 3, 5), 2)
    with pytest.raises(ValueError, match="divisible by 2"):
        subpixel_unshuffle_1d(torch.zeros(1, 1, 5), 2)


# --- interpolation ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["soxr", "subsample"])
def test_cubic_interpolation_matches_scipy_spline_baseline(method):
    lr, _ = speech_pair(0.5, seeds=(3,), method=method)
    ours = Interpolator(FACTOR, "cubic")(lr)[0, 0].numpy()
    base = upsample_cubic(lr[0, 0].numpy(), FACTOR)
    assert ours.shape == base.shape
    edge = 16 * FACTOR  # end conditions differ (natural vs not-a-knot) within a few low-res samples
    assert np.abs(ours[edge:-edge] - base[edge:-edge]).max() < 1e-5
    assert np.abs(ours - base).max() < 0.01
    # a spline passes through its knots, at the ends too: low-res sample k is high-res sample k*FACTOR
    np.testing.assert_allclose(ours[::FACTOR], lr[0, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize("method, max_error_db", [("soxr", -70), ("subsample", -50)])
def test_sinc_interpolation_close_to_soxr_baseline(method, max_error_db):
    lr, _ = speech_pair(0.5, seeds=(3,), method=method)
    ours = Interpolator(FACTOR, "sinc")(lr)[0, 0].numpy()
    base = upsample_sinc(lr[0, 0].numpy(), FACTOR, 4000)
    edge = 128 * FACTOR
    assert -snr_db(base[edge:-edge], ours[edge:-edge]) < max_error_db


def test_sinc_interpolation_leaves_the_high_band_empty():
    noise = torch.randn(1, 1, 4000, generator=torch.Generator().manual_seed(0))
    y = Interpolator(FACTOR, "sinc")(noise)[0, 0, 2000:-2000].numpy().astype(np.float64)
    power = np.abs(np.fft.rfft(y * np.hanning(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert power[freqs >= 2000].sum() < 1e-9 * power.sum()  # 90 dB down


@pytest.mark.parametrize("kind", ["cubic", "sinc"])
def test_interpolation_batches_and_handles_tiny_inputs(kind):
    interp = Interpolator(FACTOR, kind)
    x = torch.randn(3, 1, 50, generator=torch.Generator().manual_seed(1))
    together = interp(x)
    for i in range(3):
        torch.testing.assert_close(interp(x[i : i + 1]), together[i : i + 1])
    torch.testing.assert_close(interp(torch.full((1, 1, 1), 0.25)), torch.full((1, 1, FACTOR), 0.25))
    for n in (2, 3, 5):
        y = interp(torch.randn(2, 1, n))
        assert y.shape == (2, 1, n * FACTOR) and torch.isfinite(y).all()


def test_interpolation_rejects_unknown_kind_and_bad_shape():
    with pytest.raises(ValueError, match="choose one of cubic, sinc"):
        Interpolator(FACTOR, "linear")
    with pytest.raises(ValueError, match=r"expected \(batch, 1, samples\)"):
        Interpolator(FACTOR, "cubic")(torch.zeros(2, 100))


# --- the networks -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("interpolation", ["cubic", "sinc"])
@pytest.mark.parametrize("n", [1, 7, 1001])
def test_output_has_factor_times_the_samples_for_any_length(name, interpolation, n):
    model = tiny(name, interpolation=interpolation).eval()
    assert model.factor == FACTOR
    with torch.no_grad():
        y = model(torch.randn(2, 1, n, generator=torch.Generator().manual_seed(n)) * 0.1)
    assert y.shape == (2, 1, n * FACTOR)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_paper_sized_block_layout():
    assert block_channels(128, 4) == [128, 256, 512, 512]
    assert block_kernel_sizes(4) == [65, 33, 17, 9]
    assert block_channels(32, 6) == [32, 64, 128, 128, 128, 128]
    assert block_kernel_sizes(6) == [65, 33, 17, 9, 9, 9]


@pytest.mark.parametrize("name", FAMILIES)
def test_untrained_model_starts_at_its_interpolation(name):
    # AudioUNet's last layer starts near zero, so its residual path is the output; TFNet starts with
    # w = 0.99 on that same time branch. Checks the wiring and the sample alignment of both.
    lr, _ = speech_pair(0.25, seeds=(4,))
    for kind, baseline in (("cubic", upsample_cubic(lr[0, 0].numpy(), FACTOR)), ("sinc", upsample_sinc(lr[0, 0].numpy(), FACTOR, 4000))):
        with torch.no_grad():
            y = tiny(name, interpolation=kind).eval()(lr)[0, 0].numpy()
        assert snr_db(baseline, y) > 30


def test_tfnet_with_full_time_weight_returns_its_time_branch_aligned():
    # w = 1 in every bin: the fused magnitude is |F(z)| with z's phase, so the STFT round trip must
    # give back z sample for sample (here z is the untrained time branch: about the interpolation)
    lr, _ = speech_pair(0.25, seeds=(5,))
    lr = lr[..., :1001]  # not a multiple of the hop or of 2**(depth+1)
    model = tiny("tfnet").eval()
    with torch.no_grad():
        model.fusion_logit.fill_(20.0)
        y = model(lr)
        base = model.interpolate(lr)
        z = base + model.time_branch.forward_any_length(base)
    torch.testing.assert_close(y, z, atol=1e-5, rtol=0)


def test_spectral_replicator_tiles_the_low_band_and_drops_dc():
    magnitude = torch.tensor([9.0, 1, 2, 3, 4, 5, 6, 7, 8])[None, :, None]  # DC then 8 bins
    assert replicate_low_band(magnitude, 2)[0, :, 0].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]
    assert replicate_low_band(magnitude, 4)[0, :, 0].tolist() == [1, 2, 1, 2, 1, 2, 1, 2]
    assert replicate_low_band(magnitude, 3)[0, :, 0].tolist() == [1, 2, 1, 2, 1, 2, 1, 2]


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_model_overfits_one_batch(name):
    lr, hr = speech_pair(0.064)
    model = tiny(name, width=8, depth=2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    baseline = float(torch.mean((Interpolator(FACTOR, "cubic")(lr) - hr) ** 2))
    losses = []
    for _ in range(300):
        loss = torch.mean((model(lr) - hr) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if losses[-1] < losses[0] / 10:
            break
    assert losses[-1] < losses[0] / 10, f"loss only fell from {losses[0]:.3g} to {min(losses):.3g}"
    assert losses[-1] < baseline  # and it now beats the interpolation it started from


def test_unknown_model_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"'bwe', 'audiounet' or 'tfnet'"):
        ModelSettings(name="nope")


@pytest.mark.parametrize("name", FAMILIES)
def test_eval_is_deterministic_and_train_uses_dropout(name):
    model = tiny(name)
    x = torch.randn(2, 1, 300, generator=torch.Generator().manual_seed(2)) * 0.1
    # a non-trivial last layer, so that dropout inside the U-Net reaches the output
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    model.train()
    with torch.no_grad():
        assert not torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", FAMILIES)
def test_bfloat16_autocast_forward_and_backward(name):
    model = tiny(name)
    x = torch.randn(2, 1, 333, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    assert y.dtype == torch.float32 and y.shape == (2, 1, 333 * FACTOR) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_round_trip_rebuilds_the_same_network(name):
    model = tiny(name, interpolation="sinc").eval()
    assert all(not k.endswith(("interpolate.weight", "window")) for k in model.state_dict())
    again = tiny(name, interpolation="sinc")
    with torch.no_grad():
        for p in again.parameters():
            p.zero_()
    again.load_state_dict(model.state_dict())
    again.eval()
    x = torch.randn(1, 1, 200) * 0.1
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


# --- size and cost ------------------------------------------------------------------------------


def test_count_parameters():
    assert count_parameters(nn.Linear(3, 2)) == 8
    assert count_parameters(Interpolator(FACTOR, "sinc")) == 0  # the filter is a fixed buffer


@pytest.mark.parametrize("name", FAMILIES)
def test_flops_per_second_scale_with_the_rate(name):
    model = tiny(name)
    one = flops_per_second(model, FACTOR, 2048)
    assert one > 0
    assert model.training  # the mode is restored
    if name == "audiounet":  # convolutions only: exactly proportional to length (no padding here)
        assert flops_per_second(model, FACTOR, 4096) == 2 * one
    with pytest.raises(ValueError, match="expected"):
        flops_per_second(model, 2, 2048)
