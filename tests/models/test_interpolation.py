"""Torch interpolation (:mod:`audio_superres.models.interpolation`) against the numpy baselines:
the cubic spline and the windowed sinc, batches and tiny inputs, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_superres.models.interpolation import Interpolator
from audio_superres.pipeline.evaluation.baselines import upsample_cubic, upsample_sinc

from .conftest import FACTOR, snr_db, speech_pair

pytestmark = pytest.mark.usefixtures("one_thread")


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
