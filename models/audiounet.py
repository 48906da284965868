"""``audiounet``: the 1-D U-Net of Kuleshov, Enam and Ermon, "Audio super resolution using neural
networks" (ICLR workshop 2017), as in their ``audio-super-res`` code and jhetherly's TEDLIUM upsampler.

The low-res clip is first interpolated to the high rate (``model.interpolation``: cubic spline, as
the paper, or band-limited sinc; ``models.interpolation``); the U-Net predicts a correction that is
added to it (the residual), so an untrained network starts at the interpolation baseline.

    down block b (b = 0 .. depth-1): Conv1d stride 2, LeakyReLU(0.2)
    bottleneck:                       Conv1d stride 2, Dropout, LeakyReLU(0.2)
    up block b (b = depth-1 .. 0):    Conv1d to 2 C_b channels, Dropout, ReLU, subpixel shuffle x2
                                      (C_b channels at twice the length), concatenated with down block b
    last:                             Conv1d to 2 channels (kernel 9), subpixel shuffle x2, + input

Channels ``C_b = min(width * 2**b, 4 * width)`` and kernel sizes ``max(2**(6 - b) + 1, 9)``, the
paper's ``min(2**(6+b), 512)`` / ``max(2**(7-b) + 1, 9)`` for b from 1: width 128, depth 4 gives its
128, 256, 512, 512 filters of lengths 65, 33, 17, 9, and deeper nets keep length 9. Weights start
orthogonal and the last convolution near zero (std 1e-3), as in Kuleshov's code. Dropout is
``model.dropout`` (the paper's 0.5). No batch norm (the paper found it did not help).

Any length works: the interpolated signal is zero-padded on the right to a multiple of
``2**(depth + 1)`` (the U-Net halves it ``depth + 1`` times), and the output is cropped back. Zero is
what the convolutions' own "same" padding already shows the network past each end, so this adds no
new kind of edge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .interpolation import Interpolator
from .subpixel import subpixel_shuffle_1d


def block_channels(width: int, depth: int) -> list[int]:
    """Channels of each down block: doubling from ``width``, capped at ``4 * width``."""
    return [min(width * 2**b, 4 * width) for b in range(depth)]


def block_kernel_sizes(depth: int) -> list[int]:
    """Kuleshov's 65, 33, 17, 9, then 9 for deeper blocks."""
    return [max(2 ** (6 - b) + 1, 9) for b in range(depth)]


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv1d:
    conv = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)
    nn.init.orthogonal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class UNet1d(nn.Module):
    """The U-Net body: ``(batch, in_channels, L)`` -> ``(batch, out_channels, L)`` for ``L`` a
    multiple of ``2**(depth + 1)`` (see :meth:`forward_any_length` for other lengths)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int, dropout: float):
        super().__init__()
        channels = block_channels(width, depth)
        kernels = block_kernel_sizes(depth)
        self.depth = depth
        self.down = nn.ModuleList()
        prev = in_channels
        for ch, k in zip(channels, kernels):
            self.down.append(nn.Sequential(_conv(prev, ch, k, stride=2), nn.LeakyReLU(0.2)))
            prev = ch
        self.bottleneck = nn.Sequential(_conv(prev, prev, kernels[-1], stride=2), nn.Dropout(dropout), nn.LeakyReLU(0.2))
        self.up = nn.ModuleList()
        for b in reversed(range(depth)):
            # the block below the bottleneck sees its output; the others see (shuffled + skip) = 2 C_{b+1}
            in_ch = channels[-1] if b == depth - 1 else 2 * channels[b + 1]
            self.up.append(nn.Sequential(_conv(in_ch, 2 * channels[b], kernels[b]), nn.Dropout(dropout), nn.ReLU()))
        self.last = nn.Conv1d(2 * channels[0], 2 * out_channels, 9, padding=4)
        nn.init.normal_(self.last.weight, std=1e-3)
        nn.init.zeros_(self.last.bias)

    @property
    def multiple(self) -> int:
        return 2 ** (self.depth + 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.bottleneck(x)
        for block, skip in zip(self.up, reversed(skips)):
            x = torch.cat([subpixel_shuffle_1d(block(x), 2), skip], dim=1)
        return subpixel_shuffle_1d(self.last(x), 2)

    def forward_any_length(self, x: Tensor) -> Tensor:
        """:meth:`forward` on ``x`` zero-padded on the right to a multiple of ``2**(depth+1)``, cropped back."""
        n = x.shape[-1]
        pad = -n % self.multiple
        return self(F.pad(x, (0, pad)))[..., :n] if pad else self(x)


class AudioUNet(nn.Module):
    """Low-res ``(batch, 1, n)`` -> high-res ``(batch, 1, n * factor)``: interpolation + U-Net residual."""

    # train in TF32, not bf16 autocast: one paper-size training step (batch 16 of 2 s) on an H200
    # took 947 ms under bf16 and 119 ms in TF32 (audiounet; tfnet 2180 ms under bf16)
    train_bf16 = False

    def __init__(self, factor: int, width: int = 32, depth: int = 4, interpolation: str = "cubic", dropout: float = 0.5):
        super().__init__()
        self.factor = factor
        self.interpolate = Interpolator(factor, interpolation)
        self.unet = UNet1d(1, 1, width, depth, dropout)

    def forward(self, x: Tensor) -> Tensor:
        base = self.interpolate(x)  # float32 even under autocast
        return base + self.unet.forward_any_length(base).float()
