"""The size and cost counters (:mod:`audio_superres.models.flops`): parameters, and FLOPs per second
of audio."""

from __future__ import annotations

import pytest
from torch import nn

from audio_superres.models.flops import count_parameters, flops_per_second
from audio_superres.models.interpolation import Interpolator

from .conftest import FACTOR, FAMILIES, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


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
