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

import contextlib
import copy
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr
import torch
from torch import nn
from tqdm.auto import tqdm

from pipeline.settings import UpsamplingSettings
from preprocessing.audio import AUDIO_EXTENSIONS, AudioError, atomic_path, audio_info, remove_stale_temporaries

# Window starts and context are multiples of this many low-rate samples: 2**9 covers the total stride
# of any network of up to 9 stride-2 levels (audiounet halves depth + 1 times, depth <= 8).
ALIGN = 512
READ_BLOCK = 1 << 16  # frames read from disk at a time


class UpsampleError(Exception):
    """The stage cannot run at all (no checkpoint, no such device); the message is one line."""


# ---------------------------------------------------------------------------------------------------
# The model adapter


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when there is a GPU, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UpsampleError("--device cuda: no CUDA GPU is available to torch here; use --device cpu")
    return torch.device(name)


@dataclass
class Upsampler:
    """A network with the rates it works at: ``model`` maps ``(batch, 1, n)`` at ``low_rate`` to
    ``(batch, 1, n * factor)``. Calling it runs rows of equal length through the model in batches."""

    model: nn.Module
    factor: int
    low_rate: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int | None = None  # None: 8 on a CPU, 64 on a GPU (more rows per call keep a GPU busy)
    bf16: bool | str = False  # "auto": when the model keeps its signal path in float32 (``bf16_safe``)

    def __post_init__(self) -> None:
        self.device = torch.device(self.device)
        self.model = self.model.to(self.device).eval()
        if self.batch_size is None:
            self.batch_size = 64 if self.device.type == "cuda" else 8
        if self.bf16 == "auto":
            self.bf16 = bool(getattr(self.model, "bf16_safe", False))
        self._autocast = bool(self.bf16)
        if self.bf16 and hasattr(self.model, "cast_trunk"):  # bfloat16 weights: no casts at every call
            self.model = copy.deepcopy(self.model)  # the caller's model keeps its float32 weights
            self.model.cast_trunk(torch.bfloat16)
            self._autocast = False

    @property
    def high_rate(self) -> int:
        return self.low_rate * self.factor

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """``rows`` (r, n) float32 at the low rate -> (r, n * factor) float32 at the high rate."""
        out = np.empty((rows.shape[0], rows.shape[1] * self.factor), dtype=np.float32)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if self._autocast else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, rows.shape[0], self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(rows[start : start + self.batch_size])).to(self.device).unsqueeze(1)
                y = self.model(x)
                if y.shape != (x.shape[0], 1, x.shape[2] * self.factor):
                    raise RuntimeError(f"model returned shape {tuple(y.shape)} for input {tuple(x.shape)}; expected (batch, 1, n * {self.factor})")
                out[start : start + len(x)] = y[:, 0].float().cpu().numpy()
        return out


# the model that ships inside the package (see models/pretrained/MODEL_CARD.md): used when neither
# --checkpoint nor upsampling.checkpoint names one; loading it needs no network
PACKAGED_CHECKPOINT = Path(__file__).resolve().parent / "pretrained" / "bwe_speech_4k_16k.pt"


def find_checkpoint(cli_value: str | Path | None, settings: UpsamplingSettings) -> Path:
    """The checkpoint to use: ``--checkpoint``, else ``upsampling.checkpoint``, else the packaged
    default model (speech, 4 kHz -> 16 kHz)."""
    chosen = cli_value if cli_value is not None else settings.checkpoint
    if chosen is None:
        if PACKAGED_CHECKPOINT.is_file():
            return PACKAGED_CHECKPOINT
        raise UpsampleError("no checkpoint: pass --checkpoint FILE or set upsampling.checkpoint (--set upsampling.checkpoint=runs/x/best.pt)")
    path = Path(chosen)
    if not path.is_file():
        raise UpsampleError(f"{path}: checkpoint file does not exist ({'--checkpoint' if cli_value is not None else 'upsampling.checkpoint'})")
    return path


def load_upsampler(checkpoint: str | Path, settings: UpsamplingSettings, device: str | None = None) -> tuple[Upsampler, dict]:
    """The checkpoint's network as an :class:`Upsampler` (rates and factor from its stored data
    settings), on ``device`` (default ``settings.device``), with its info dict."""
    from models.checkpoint import CheckpointError, load_model

    dev = resolve_device(device or settings.device)
    try:
        model, info = load_model(checkpoint, device=str(dev))
    except CheckpointError as e:
        raise UpsampleError(str(e)) from None
    data = info["data"]
    up = Upsampler(model, int(data["factor"]), int(data["low_rate"]), dev, settings.batch_size, settings.bf16)
    return up, info


# ---------------------------------------------------------------------------------------------------
# Chunking


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


def upsample_stream(
    blocks: Iterable[np.ndarray],
    channels: int,
    up: Upsampler,
    plan: ChunkPlan,
    write: Callable[[np.ndarray], None],
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Upsample a stream of low-rate blocks ``(m, channels)`` and pass the output, in order, to
    ``write`` as ``(k, channels)`` blocks; ``progress`` gets the low-rate samples finished each time.
    Returns the low-rate length. Holds at most one batch of windows in memory.

    Windows are cut at the ends of the file, not padded: the model meets the file's true ends just
    as it would in one pass over the whole file (a file shorter than a chunk is exactly one pass).
    """
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


# ---------------------------------------------------------------------------------------------------
# Files


def read_lowrate_blocks(path: Path, low_rate: int, block: int = READ_BLOCK) -> Iterator[np.ndarray]:
    """The file's samples at ``low_rate`` as float32 ``(m, channels)`` blocks, resampled on the fly
    (soxr HQ stream: the same samples as resampling the whole file at once). At least one sample in
    all. Raises :class:`AudioError` for NaN/infinite samples, a truncated file, or no samples."""
    with sf.SoundFile(str(path)) as f:
        rate, channels, promised = f.samplerate, f.channels, f.frames
        stream = soxr.ResampleStream(rate, low_rate, channels, dtype="float32", quality="HQ") if rate != low_rate else None
        got = out = 0
        try:
            for data in f.blocks(block, dtype="float32", always_2d=True):
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
        return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)
    if subtype == "PCM_24":  # libsndfile keeps the top 24 bits of an int32
        return (np.clip(np.round(y * 8388608.0), -8388608, 8388607).astype(np.int32) << 8)
    return y


@dataclass
class FileResult:
    source: Path
    output: Path | None
    seconds: float = 0.0
    error: str = ""
    resampled_from: int | None = None


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
            with sf.SoundFile(str(tmp), "w", samplerate=up.high_rate, channels=info.channels, subtype=subtype, format="WAV") as out:
                upsample_stream(read_lowrate_blocks(source, up.low_rate), info.channels, up, plan, lambda y: out.write(file_samples(y, subtype)), counted)
    except AudioError as e:
        return FileResult(source, None, error=str(e))
    except (sf.LibsndfileError, OSError) as e:
        return FileResult(source, None, error=f"{source}: cannot write {output} ({e.strerror if isinstance(e, OSError) and e.strerror else e})")
    return FileResult(source, output, frames / up.low_rate, resampled_from=info.samplerate if info.samplerate != up.low_rate else None)


def prepare_output_folders(pairs: list[tuple[Path, Path]]) -> None:
    """Before any file is read: refuse with :class:`UpsampleError` when an output folder cannot be
    made or written (rather than failing every file in turn), and delete the temporaries that a
    killed run left for these outputs."""
    folders: dict[Path, set[str]] = {}
    for _, dst in pairs:
        folders.setdefault(dst.parent, set()).add(dst.name)
    for folder, names in sorted(folders.items()):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UpsampleError(f"{folder}: output folder cannot be created: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UpsampleError(f"{folder}: output folder cannot be written ({existing} is read-only or not ours)")
        if existing == folder:
            remove_stale_temporaries(folder, names)


def audio_files_in(folder: Path, exclude: Path | None = None) -> list[Path]:
    """Audio files under ``folder``, recursively, sorted; hidden files and folders (temporaries) and
    the folder ``exclude`` (an output folder inside the input) are left out."""
    exclude = exclude.resolve() if exclude is not None else None
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or (Path(root) / d).resolve() != exclude))
        found += [Path(root) / name for name in sorted(files) if Path(name).suffix.lower() in AUDIO_EXTENSIONS and not name.startswith(".")]
    return found


def plan_outputs(inputs: list[str | Path], output: str | Path | None, factor: int) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(source, destination) pairs for ``pipeline upsample IN [IN ...] [-o OUT]``, and one-line errors
    for inputs that give nothing to do.

    One file: ``OUT`` is the output file (default ``<stem>_x<factor>.wav`` beside it). Otherwise
    ``OUT`` is a folder: one folder input is mirrored into it (same sub-folders and stems, ``.wav``);
    with several inputs each folder goes to ``OUT/<folder name>/`` and each file to ``OUT/``. Without
    ``OUT``, files get ``<stem>_x<factor>.wav`` beside them and folders ``<folder>_x<factor>/``.
    """
    paths = [Path(p) for p in inputs]
    out = Path(output) if output is not None else None
    errors: list[str] = []
    pairs: list[tuple[Path, Path]] = []
    suffix = f"_x{factor}"
    if len(paths) == 1 and not paths[0].is_dir():
        src = paths[0]
        if not src.exists():
            return [], [f"{src}: no such file or folder"]
        dst = out if out is not None else src.with_name(f"{src.stem}{suffix}.wav")
        if out is not None and out.is_dir():
            dst = out / f"{src.stem}.wav"
        elif dst.suffix.lower() != ".wav":
            return [], [f"{dst}: the output is a WAV file; name it .wav"]
        if dst.resolve() == src.resolve():
            return [], [f"{src}: its output would overwrite the input; choose another -o"]
        return [(src, dst)], []
    for src in paths:
        if src.is_dir():
            root = out if out is not None and len(paths) == 1 else (out / src.resolve().name if out is not None else src.parent / f"{src.resolve().name}{suffix}")
            files = audio_files_in(src, root)
            if not files:
                errors.append(f"{src}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
            pairs += [(f, (root / f.relative_to(src)).with_suffix(".wav")) for f in files]
        elif src.exists():
            pairs.append((src, out / f"{src.stem}.wav" if out is not None else src.with_name(f"{src.stem}{suffix}.wav")))
        else:
            errors.append(f"{src}: no such file or folder")
    seen: dict[Path, Path] = {}
    kept = []
    for src, dst in pairs:
        key = dst.resolve()
        if key in seen:
            errors.append(f"{src}: its output {dst} would overwrite the output of {seen[key]}; rename one of them")
        elif key == src.resolve():
            errors.append(f"{src}: its output would overwrite the input; choose another -o")
        else:
            seen[key] = src
            kept.append((src, dst))
    return kept, errors


@dataclass
class UpsampleSummary:
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    errors: list[str] = field(default_factory=list)

    def line(self, up: Upsampler) -> str:
        speed = f" ({self.seconds / self.wall:.1f}x real time)" if self.wall > 0 and self.seconds > 0 else ""
        return (
            f"upsample: {self.done} file(s) done, {self.failed} failed; {self.seconds:.1f} s of audio "
            f"{up.low_rate} Hz -> {up.high_rate} Hz in {self.wall:.1f} s{speed}"
        )


def _say(line: str) -> None:
    """One line on stderr that does not break the progress bar."""
    tqdm.write(line, file=sys.stderr)


def _duration(path: Path) -> float:
    with contextlib.suppress(AudioError):
        return audio_info(path).duration
    return 0.0


def upsample_paths(
    inputs: list[str | Path],
    output: str | Path | None,
    up: Upsampler,
    settings: UpsamplingSettings,
    quiet: bool = False,
) -> UpsampleSummary:
    """``pipeline upsample``: every input through :func:`upsample_file`, with a progress bar over
    seconds of audio. Errors are printed as they happen (one line each) and counted; the other
    inputs go on. Raises :class:`UpsampleError` when there is nothing to do (no input gives a file)
    or an output folder cannot be written."""
    pairs, errors = plan_outputs(inputs, output, up.factor)
    if not pairs:
        raise UpsampleError("; ".join(errors) if errors else "no inputs")
    prepare_output_folders(pairs)
    summary = UpsampleSummary(failed=len(errors), errors=list(errors))
    for line in errors:
        _say(f"error: {line}")
    plan = ChunkPlan.from_settings(settings, up.low_rate)
    durations = [_duration(src) for src, _ in pairs]
    # several files at once on a GPU: while one file's windows are on the GPU, others are decoded,
    # cross-faded and written (numpy, soundfile and torch release the GIL for that work)
    workers = settings.workers or (4 if up.device.type == "cuda" else 1)
    lock = threading.Lock()
    start = time.perf_counter()
    with tqdm(total=round(sum(durations), 1), desc="upsample", unit="s", disable=quiet, dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:

        def advance(seconds: float) -> None:
            with lock:
                bar.update(seconds)

        def one(pair: tuple[Path, Path], seconds: float) -> FileResult:
            done = [0.0]

            def progress(n: int) -> None:
                done[0] += n / up.low_rate
                advance(n / up.low_rate)

            result = upsample_file(pair[0], pair[1], up, plan, settings.output_subtype, progress, (lambda line: None) if quiet else _say)
            advance(max(0.0, seconds - done[0]))  # a failed file's unread seconds count as passed too
            return result

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(one, pairs, durations):
                if result.error:
                    summary.failed += 1
                    summary.errors.append(result.error)
                    _say(f"error: {result.error}")
                else:
                    summary.done += 1
                    summary.seconds += result.seconds
    summary.wall = time.perf_counter() - start
    if not quiet:
        print(summary.line(up))
    return summary
