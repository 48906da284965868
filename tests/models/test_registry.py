"""The research families built by name (:func:`audio_superres.models.registry.build_model`), each
test over both ``audiounet`` and ``tfnet``: shapes for awkward lengths, starting at their
interpolation, learning, eval determinism, bfloat16 autocast, the state dict's round trip. CPU,
tiny models, generated audio."""

from __future__ import annotations

import pytest
import torch

from audio_superres.models.interpolation import Interpolator
from audio_superres.pipeline.evaluation.baselines import upsample_cubic, upsample_sinc

from .conftest import FACTOR, FAMILIES, snr_db, speech_pair, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


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


@pytest.mark.parametrize("name", FAMILIES)
def test_untrained_model_starts_at_its_interpolation(name):
    # AudioUNet's last layer starts near zero, so its residual path is the output; TFNet starts with
    # w = 0.99 on that same time branch. Checks the wiring and the sample alignment of both.
    lr, _ = speech_pair(0.25, seeds=(4,))
    for kind, baseline in (("cubic", upsample_cubic(lr[0, 0].numpy(), FACTOR)), ("sinc", upsample_sinc(lr[0, 0].numpy(), FACTOR, 4000))):
        with torch.no_grad():
            y = tiny(name, interpolation=kind).eval()(lr)[0, 0].numpy()
        assert snr_db(baseline, y) > 30


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
