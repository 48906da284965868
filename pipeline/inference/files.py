"""Reading a recording at the model's rate and writing its upsampled twin, one file at a time."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf
import soxr

from audio_superres.preprocessing.audio import AudioError, atomic_path, audio_info, pcm16_ints, read_blocks, sound_source

from .adapter import Upsampler
from .chunking import ChunkPlan, upsample_stream

READ_BLOCK = 1 << 16  # frames read from disk at a time


def read_lowrate_blocks(path: Path, low_rate: int, block: int = READ_BLOCK) -> Iterator[np.ndarray]:
    """The file's samples at ``low_rate`` as float32 ``(m, channels)`` blocks, resampled on the fly
    (soxr HQ stream: the same samples as resampling the whole file at once). At least one sample in
    all. Raises :class:`AudioError` for NaN/infinite samples, a truncated file, or no samples."""
    with sound_source(path) as source, sf.SoundFile(source) as f:
        rate, channels, promised = f.samplerate, f.channels, f.frames
        stream = soxr.ResampleStream(rate, low_rate, channels, dtype="float32", quality="HQ") if rate != low_rate else None
        got = out = 0
        try:
            for data in read_blocks(f, block):
                if not np.isfinite(data).all():
                    bad = got + int(np.argmax(~np.isfinite(data).all(axis=1)))
                    raise AudioError(path, f"holds NaN or infinite samples (first at {bad / rate:.3f} s)")
                got += len(data)
                if stream is not None:
                    data = stream.resample_chunk(data)
                if len(data):
                    out += len(data)
                    yield data
        except (sf.LibsndfileError, RuntimeError) as e:
            raise AudioError(path, f"cannot decode ({str(e).strip()})") from None
        if got == 0:
            raise AudioError(path, "holds no audio samples")
        if 0 < promised and got < promised:
            raise AudioError(path, f"truncated: header promises {promised} frames, file holds {got}")
        if stream is not None:
            rest = stream.resample_chunk(np.zeros((0, channels), np.float32), last=True)
            if len(rest):
                out += len(rest)
                yield rest
        if out == 0:  # shorter than one low-rate period
            yield np.zeros((1, channels), np.float32)


def file_samples(y: np.ndarray, subtype: str) -> np.ndarray:
    """What to hand soundfile for ``subtype``: PCM as integers rounded to nearest (libsndfile floors
    floats on the way to PCM, a -0.5 LSB bias, and then the file would not hold
    ``preprocessing.audio.to_pcm16`` of the output, which is what ``evaluate`` scores)."""
    if subtype == "PCM_16":
        return pcm16_ints(y)
    if subtype == "PCM_24":  # libsndfile keeps the top 24 bits of an int32
        return np.clip(np.round(y * 8388608.0), -8388608, 8388607).astype(np.int32) << 8
    return y


@dataclass
class FileResult:
    source: Path
    output: Path | None
    seconds: float = 0.0
    error: str = ""
    resampled_from: int | None = None
    peak: float = 0.0  # of the output before it was written: above 1.0, a PCM file was clipped


class _PeakWriter:
    """Writes blocks as ``subtype`` and remembers the largest magnitude it was given."""

    def __init__(self, out: sf.SoundFile, subtype: str):
        self.out, self.subtype, self.peak = out, subtype, 0.0

    def __call__(self, y: np.ndarray) -> None:
        if len(y):
            self.peak = max(self.peak, float(np.max(np.abs(y))))
        self.out.write(file_samples(y, self.subtype))


def upsample_file(
    source: str | Path,
    output: str | Path,
    up: Upsampler,
    plan: ChunkPlan,
    subtype: str = "PCM_16",
    progress: Callable[[int], None] = lambda n: None,
    on_resample: Callable[[str], None] = lambda line: None,
) -> FileResult:
    """Upsample one file to a WAV at ``up.high_rate`` (written under a temporary name, renamed when
    complete). A bad input is returned as a result with ``error`` set, never raised, and leaves no
    output behind."""
    source, output = Path(source), Path(output)
    try:
        info = audio_info(source)
        if info.samplerate != up.low_rate:
            on_resample(f"note: {source}: {info.samplerate} Hz resampled to the model's input rate {up.low_rate} Hz")
        frames = 0

        def counted(n: int) -> None:
            nonlocal frames
            frames += n
            progress(n)

        with atomic_path(output) as tmp:
            with sound_source(tmp, "w+b") as target, sf.SoundFile(target, "w", samplerate=up.high_rate, channels=info.channels, subtype=subtype, format="WAV") as out:
                writer = _PeakWriter(out, subtype)
                upsample_stream(read_lowrate_blocks(source, up.low_rate), info.channels, up, plan, writer, counted)
    except AudioError as e:
        return FileResult(source, None, error=str(e))
    except (sf.LibsndfileError, OSError) as e:
        return FileResult(source, None, error=f"{source}: cannot write {output} ({e.strerror if isinstance(e, OSError) and e.strerror else e})")
    return FileResult(source, output, frames / up.low_rate, resampled_from=info.samplerate if info.samplerate != up.low_rate else None, peak=writer.peak)


def copy_file(source: str | Path, output: str | Path, rate: int, subtype: str = "PCM_16", progress: Callable[[int], None] = lambda n: None) -> FileResult:
    """A recording that is already wideband: copied in band to a WAV at ``rate`` (resampled with soxr
    HQ, streaming, only where the rates differ), never re-invented. Same contract as
    :func:`upsample_file`; ``progress`` gets samples at ``rate``."""
    source, output = Path(source), Path(output)
    try:
        info = audio_info(source)
        frames = 0
        with atomic_path(output) as tmp:
            with sound_source(tmp, "w+b") as target, sf.SoundFile(target, "w", samplerate=rate, channels=info.channels, subtype=subtype, format="WAV") as out:
                writer = _PeakWriter(out, subtype)
                for block in read_lowrate_blocks(source, rate):
                    writer(block)
                    frames += len(block)
                    progress(len(block))
    except AudioError as e:
        return FileResult(source, None, error=str(e))
    except (sf.LibsndfileError, OSError) as e:
        return FileResult(source, None, error=f"{source}: cannot write {output} ({e.strerror if isinstance(e, OSError) and e.strerror else e})")
    return FileResult(source, output, frames / rate, resampled_from=info.samplerate if info.samplerate != rate else None, peak=writer.peak)
