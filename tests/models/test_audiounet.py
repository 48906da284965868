"""The ``audiounet`` family (:mod:`audio_superres.models.audiounet`): the paper's block layout.
What it shares with ``tfnet`` is tested over both in test_registry.py."""

from __future__ import annotations

import pytest

from audio_superres.models.audiounet import block_channels, block_kernel_sizes

pytestmark = pytest.mark.usefixtures("one_thread")


def test_paper_sized_block_layout():
    assert block_channels(128, 4) == [128, 256, 512, 512]
    assert block_kernel_sizes(4) == [65, 33, 17, 9]
    assert block_channels(32, 6) == [32, 64, 128, 128, 128, 128]
    assert block_kernel_sizes(6) == [65, 33, 17, 9, 9, 9]
