"""The training losses (:mod:`audio_superres.models.losses`): the STFT terms and the weighted total."""

from __future__ import annotations

import pytest
import torch

from audio_superres.models.losses import stft_loss_terms, training_loss
from audio_superres.preprocessing.lowres import make_lowres

pytestmark = pytest.mark.usefixtures("one_thread")


def test_stft_loss_sanity():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000) * 0.1
    same = stft_loss_terms(x, x)
    assert same["sc"].item() == pytest.approx(0, abs=1e-6) and same["logmag"].item() == pytest.approx(0, abs=1e-6)
    # losing the high band (what an MSE-trained model does) costs more than a small broadband error
    low = torch.from_numpy(make_lowres(x[0, 0].numpy(), 4)).repeat_interleave(4)[None, None].expand(2, 1, -1)
    noisy = x + 0.01 * torch.randn_like(x)
    assert stft_loss_terms(low, x)["logmag"] > stft_loss_terms(noisy, x)["logmag"] > 0
    # spectral convergence is relative: the same for a scaled pair
    assert stft_loss_terms(3 * noisy, 3 * x)["sc"].item() == pytest.approx(stft_loss_terms(noisy, x)["sc"].item(), rel=1e-4)
    # finite gradients from a silent prediction, and a bf16 prediction is accepted
    pred = torch.zeros_like(x, requires_grad=True)
    total, terms = training_loss(pred, x, mse_weight=1.0, stft_weight=1.0)
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert set(terms) == {"mse", "stft", "sc", "logmag"}
    assert total.item() == pytest.approx(terms["mse"].item() + terms["stft"].item(), rel=1e-6)
    assert torch.isfinite(training_loss(x.bfloat16(), x, stft_weight=1.0)[0])
