"""The ``tfnet`` family (:mod:`audio_superres.models.tfnet`): its time branch comes back aligned
through the STFT fusion, and the spectral replicator. What it shares with ``audiounet`` is tested
over both in test_registry.py."""

from __future__ import annotations

import pytest
import torch

from audio_superres.models.tfnet import replicate_low_band

from .conftest import speech_pair, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


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
