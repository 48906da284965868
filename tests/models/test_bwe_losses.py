"""The ``bwe`` family's own loss terms (:mod:`audio_superres.models.bwe_losses`): the SNR hinge
against sinc, and the log-spectral distance against the metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_superres.models.bwe_losses import snr_hinge
from audio_superres.pipeline.evaluation.baselines import upsample_sinc

from .test_bwe import FACTOR, speech_pair, tiny


def test_snr_hinge_charges_a_prediction_worse_than_sinc_and_not_one_much_better():
    y, lr = speech_pair(1.0, seed=7)
    target = torch.tensor(y)[None, None]
    sinc = torch.tensor(upsample_sinc(lr, FACTOR, 4000))[None, None]
    model = tiny(snr_margin_db=0.0)
    noisy = sinc + 0.5 * (target - sinc).roll(1000, dims=-1)  # a wrong high band: error above sinc's
    near_perfect = target + 0.01 * (sinc - target)
    hinge = lambda pred: float(snr_hinge(pred[:, 0], target[:, 0], model.factor, model.snr_margin_db))
    assert hinge(noisy) > hinge(sinc) > hinge(near_perfect)
    assert hinge(near_perfect) < 1e-3


def test_lsd_loss_matches_the_metric():
    from audio_superres.models.bwe_losses import lsd_loss
    from audio_superres.pipeline.evaluation import metrics

    y, lr = speech_pair(1.0, seed=8)
    sinc = upsample_sinc(lr, FACTOR, 4000)
    target, pred = torch.tensor(y)[None], torch.tensor(sinc)[None]
    # the loss adds the 16-bit noise floor to the prediction, so compare with a 16-bit prediction
    pcm = np.round(sinc * 32767) / 32767
    assert float(lsd_loss(pred, target, 2048, 512, 0)) == pytest.approx(metrics.lsd(y, pcm), rel=0.05)


def test_loudness_overshoot_charges_a_band_louder_than_the_truth_and_not_a_quieter_one():
    from audio_superres.models.bwe_losses import erb_bands, loudness_overshoot

    y, lr = speech_pair(1.0, seed=9)
    model = tiny()
    target = torch.tensor(y, dtype=torch.float32)[None]
    sinc = torch.tensor(upsample_sinc(lr, FACTOR, 4000), dtype=torch.float32)[None]
    high = target - sinc  # the band the model has to invent
    bands = erb_bands(model.keep_bins, model.n_bins, model.n_fft, 16)
    assert bands.shape == (16, model.n_bins - model.keep_bins) and bool((bands.sum(0) == 1).all())

    def overshoot(pred: torch.Tensor, scale: float = 1.0) -> float:
        spec = lambda x: model._stft(scale * x)[:, model.keep_bins :]
        return float(loudness_overshoot(spec(pred), spec(target), bands))

    assert overshoot(target) == 0.0
    assert overshoot(sinc) < 1e-3  # a missing band is the LSD term's business, not this one's
    too_loud, shuffled = sinc + 2.0 * high, sinc + high.roll(4000, dims=-1)  # right level, wrong frames
    assert overshoot(too_loud) > 0.05 and overshoot(shuffled) > 0.05
    # the clip's level does not weigh it (relative to its mean band power; the floor is relative too)
    assert overshoot(too_loud, scale=0.01) == pytest.approx(overshoot(too_loud), rel=1e-3)
