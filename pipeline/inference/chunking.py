"""Applying a model to whole recordings of any length: chunked, batched, streamed from and to disk.

The contract (``pipeline upsample``):

* A file at any rate is first resampled (soxr HQ, streaming) to the model's low rate; its low-rate
  length is then ``max(1, round(n * low_rate / rate))`` (soxr's own rounding; a file shorter than one
  low-rate period gives one sample).
* The output, at ``low_rate * factor``, has exactly ``factor`` times the low-rate length and no delay:
  low-rate sample ``k`` sits at output sample ``k * factor``. Every channel is upsampled on its own and
  the output has as many channels as the input.

How a file is cut (all sizes in low-rate samples)::

    window i   |ctx|<------------ chunk ------------>|ctx|      model input, ctx = context
    output i       [s_i ................... s_i + chunk)         kept
    fade           s_i + hop .. s_i + chunk = the overlap with window i+1, raised-cosine cross-fade

Window ``i`` starts at ``s_i = i * hop``. The model sees ``context`` extra samples each side and its
output for them is discarded, so that neither the cross-fade nor the kept part lies near a window
edge, where a network with a wide receptive field sees padding instead of signal. At the ends of the
file the window is cut rather than padded, so the model meets the file's true ends as in one pass. ``hop`` and ``context`` are multiples of
:data:`ALIGN`: a network that downsamples by strides (a U-Net) is only shift-equivariant for shifts
that are multiples of its total stride, so aligned windows see the signal on the same grid as a
single pass over the whole file would, and chunked output matches unchunked output.

Memory does not grow with the length of the file: the reader holds one batch of windows, the writer
one overlap, and the output is written (under a temporary name, renamed when complete) as it is made.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from audio_superres.settings import UpsamplingSettings

from .adapter import Upsampler

# Window starts and context are multiples of this many low-rate samples: 2**9 covers the total stride
# of any network of up to 9 stride-2 levels (audiounet halves depth + 1 times, depth <= 8).
ALIGN = 512


@dataclass(frozen=True)
class ChunkPlan:
    """Window geometry in low-rate samples (see the module docstring)."""

    hop: int
    overlap: int
    context: int

    @property
    def chunk(self) -> int:
        return self.hop + self.overlap

    @classmethod
    def from_settings(cls, settings: UpsamplingSettings, low_rate: int) -> "ChunkPlan":
        overlap = round(settings.overlap_seconds * low_rate)
        hop = max(ALIGN, round((settings.chunk_seconds * low_rate - overlap) / ALIGN) * ALIGN)
        overlap = min(overlap, hop - 1)  # the overlap must stay under the hop: one neighbour per side
        context = math.ceil(settings.context_seconds * low_rate / ALIGN) * ALIGN
        return cls(hop, overlap, context)


def _fades(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Raised-cosine fade-in and fade-out of ``n`` samples that sum to exactly 1."""
    fade_in = (np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)[:, None]
    return fade_in, 1.0 - fade_in


def upsample_stream(blocks: Iterable[np.ndarray], channels: int, up: Upsampler, plan: ChunkPlan, write: Callable[[np.ndarray], None], progress: Callable[[int], None] = lambda n: None) -> int:
    """Upsample a stream of low-rate blocks ``(m, channels)`` and pass the output, in order, to
    ``write`` as ``(k, channels)`` blocks; ``progress`` gets the low-rate samples finished each time.
    Returns the low-rate length. Holds at most one batch of windows in memory. Windows are cut at the
    ends of the file, not padded: the model meets the file's true ends as in one pass over it."""
    f, hop, ov, ctx = up.factor, plan.hop, plan.overlap, plan.context
    fade_in, fade_out = _fades(ov * f)
    windows_per_batch = max(1, up.batch_size // channels)
    source = iter(blocks)
    pieces: list[np.ndarray] = []
    buf = np.zeros((0, channels), np.float32)
    buf_pos = 0  # absolute low-rate position of buf[0]
    n: int | None = None  # total length, once the source is exhausted
    read = 0
    tail: np.ndarray | None = None  # the previous window's faded-out overlap

    def fill(upto: int) -> None:
        nonlocal buf, n, read
        have = read
        while n is None and have < upto:
            block = next(source, None)
            if block is None:
                n = read
                break
            pieces.append(block)
            read += len(block)
            have += len(block)
        if pieces:
            buf = np.concatenate([buf, *pieces])
            pieces.clear()

    def run(batch: list[tuple[int, int, int, np.ndarray]], last_in_stream: bool) -> None:
        """Model the windows (those of equal length together), then cross-fade and write in order."""
        nonlocal tail
        outputs: list[np.ndarray | None] = [None] * len(batch)
        for length in sorted({len(w) for *_, w in batch}):
            same = [j for j, (*_, w) in enumerate(batch) if len(w) == length]
            rows = np.concatenate([batch[j][3].T for j in same])  # (windows * channels, length)
            y = up(rows)
            for k, j in enumerate(same):
                outputs[j] = y[k * channels : (k + 1) * channels]
        for j, (s, end, offset, _) in enumerate(batch):
            y = outputs[j][:, offset * f : (offset + end - s) * f].T.copy()
            if tail is not None:
                k = len(tail)
                y[:k] = tail * fade_out + y[:k] * fade_in
            is_last = last_in_stream and j == len(batch) - 1
            keep = len(y) if is_last else hop * f
            write(y[:keep])
            tail = None if is_last else y[keep:]
            progress(end - s if is_last else hop)

    batch: list[tuple[int, int, int, np.ndarray]] = []
    i = 0
    while True:
        s = i * hop
        fill(s + plan.chunk + ctx)
        if n is not None and (n == 0 or (i > 0 and n <= s + ov)):
            break  # the previous window reached the end
        end = s + plan.chunk if n is None else min(s + plan.chunk, n)
        first = max(0, s - ctx)
        stop = end + ctx if n is None else min(end + ctx, n)
        batch.append((s, end, s - first, buf[first - buf_pos : stop - buf_pos]))
        last = n is not None and n <= s + plan.chunk
        if len(batch) >= windows_per_batch or last:
            run(batch, last)
            batch = []
        i += 1
        drop = (s + hop - ctx) - buf_pos  # nothing before the next window's context is needed again
        if drop > 0:
            buf, buf_pos = buf[drop:], buf_pos + drop
        if last:
            break
    return n or 0


def upsample_array(x: np.ndarray, up: Upsampler, plan: ChunkPlan) -> np.ndarray:
    """In memory, through the same windows as :func:`upsample_file`: ``x`` at the low rate, ``(n,)``
    or ``(n, channels)`` -> the same shape with ``n * factor`` rows."""
    x = np.asarray(x, np.float32)
    two_d = x.reshape(len(x), -1)
    out: list[np.ndarray] = []
    upsample_stream([two_d] if len(two_d) else [], two_d.shape[1], up, plan, out.append)
    y = np.concatenate(out) if out else np.zeros((0, two_d.shape[1]), np.float32)
    return y if x.ndim == 2 else y[:, 0]
