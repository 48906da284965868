"""The 1-D subpixel shuffle (Shi et al., 2016, in one dimension as Kuleshov et al. use it): trade
channels for length. ``nn.PixelShuffle`` is 2-D only; in 1-D it is a reshape and a permute.

Channel order follows ``nn.PixelShuffle``: output sample ``l * r + i`` of channel ``c`` comes from
input channel ``c * r + i`` at position ``l``. (Kuleshov's TensorFlow ``batch_to_space`` takes it from
channel ``i * C + c`` instead; with a learnt convolution in front the two are the same layer up to a
permutation of its filters, and for one output channel, as in the last layer, they are identical.)
"""

from __future__ import annotations

from torch import Tensor


def subpixel_shuffle_1d(x: Tensor, r: int) -> Tensor:
    """``(batch, channels * r, length)`` -> ``(batch, channels, length * r)``."""
    b, cr, n = x.shape
    if cr % r:
        raise ValueError(f"subpixel shuffle by {r} needs a channel count divisible by {r}, got {cr}")
    return x.reshape(b, cr // r, r, n).transpose(2, 3).reshape(b, cr // r, n * r)


def subpixel_unshuffle_1d(x: Tensor, r: int) -> Tensor:
    """The inverse: ``(batch, channels, length * r)`` -> ``(batch, channels * r, length)``."""
    b, c, nr = x.shape
    if nr % r:
        raise ValueError(f"subpixel unshuffle by {r} needs a length divisible by {r}, got {nr}")
    return x.reshape(b, c, nr // r, r).transpose(2, 3).reshape(b, c * r, nr // r)
