"""The subpixel shuffle (:mod:`audio_superres.models.subpixel`): channel groups interleaved into
time and back, and the shapes it refuses."""

from __future__ import annotations

import pytest
import torch

from audio_superres.models.subpixel import subpixel_shuffle_1d, subpixel_unshuffle_1d

pytestmark = pytest.mark.usefixtures("one_thread")


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
