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
