"""Audio I/O shared by every stage: reading any supported file to float32 at a chosen rate, and
writing 16-bit files under a temporary name that is renamed into place only once complete."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np
import soundfile as sf
import soxr

MIN_RATE, MAX_RATE = 1000, 768000  # sample rates a recording can have
AUDIO_EXTENSIONS = (".wav", ".flac", ".sph", ".ogg", ".mp3", ".opus", ".aif", ".aiff")


SNDFILE_NAME_MAX = 1023  # libsndfile keeps a file's name in 1024 bytes and refuses a longer one


@contextlib.contextmanager
def sound_source(path: str | Path, mode: str = "rb") -> Iterator[bytes | BinaryIO]:
    """What to hand soundfile for ``path``, for any name the system accepts: the name as bytes (soundfile
    encodes a str name strictly, so a name that is not UTF-8 raised UnicodeEncodeError), or, for a
    name longer than libsndfile holds, the file opened by Python (``mode``: "rb", or "w+b" to write)."""
    name = os.fsencode(path)
    if len(name) <= SNDFILE_NAME_MAX:
        yield name
    else:
        with open(name, mode) as raw:
            yield raw


class AudioError(Exception):
    """An input file that cannot be used; ``str(e)`` is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()


def _check_sphere(path: Path) -> None:
    """Refuse a shorten-compressed NIST SPHERE file with a message saying so (libsndfile reads only
    plain PCM SPHERE, and would otherwise fail with a vague error or read garbage)."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head.startswith(b"NIST_1A"):
        return
    for line in head.split(b"\n"):
        if line.startswith(b"sample_coding") and b"shorten" in line:
            raise AudioError(path, "shorten-compressed NIST SPHERE; decompress it first (sph2pipe -f wav)")


def _check_wav_length(path: Path, size: int) -> None:
    """A WAV whose header promises more data than the file holds is truncated (a copy cut short, a
    recorder killed): libsndfile silently reads what is there, so check the data chunk ourselves."""
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return
        endian = "<" if head[:4] == b"RIFF" else ">"
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack(endian + "I", chunk[4:])[0]
            if chunk_id == b"data":
                held = size - f.tell()
                if chunk_size != 0xFFFFFFFF and chunk_size > held:  # 0xFFFFFFFF: streamed, size unknown
                    raise AudioError(path, f"truncated: header promises {chunk_size} bytes of audio, file holds {held}")
                return
            f.seek(chunk_size + (chunk_size & 1), 1)


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    """``soundfile.info`` with the same one-line errors as :func:`read_audio`."""
    path = Path(path)
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise AudioError(path, f"cannot open: {e.strerror}") from None
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "cannot open: permission denied")
    if path.suffix.lower() == ".sph":
        _check_sphere(path)
    elif path.suffix.lower() == ".wav":
        _check_wav_length(path, size)
    try:
        with sound_source(path) as source:
            info = sf.info(source)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(path, f"not a readable audio file ({_short(e)})") from None
    if not MIN_RATE <= info.samplerate <= MAX_RATE:
        # a damaged header: resampling from 1 Hz would make every block thousands of times larger
        raise AudioError(path, f"its header claims a sample rate of {info.samplerate} Hz, outside {MIN_RATE}-{MAX_RATE} Hz: damaged or not audio")
    return info


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    # libsndfile's words for a file it cannot place: no one holding random bytes thinks of a pipe
    return "unrecognised format" if "possibly a pipe" in text or "Format not recognised" in text else text


def read_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read ``path`` as float32 in [-1, 1].

    ``mono=True`` averages the channels and returns shape ``(n,)``; ``mono=False`` returns
    ``(n, channels)``. ``sample_rate`` resamples with soxr HQ when the file's rate differs.
    Raises :class:`AudioError` for an empty, unreadable, truncated, or non-finite file.
    """
    path = Path(path)
    info = audio_info(path)
    try:
        with sound_source(path) as source:
            data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(path, f"cannot decode ({_short(e)})") from None
    if info.frames > 0 and len(data) < info.frames:
        raise AudioError(path, f"truncated: header promises {info.frames} frames, file holds {len(data)}")
    if len(data) == 0:
        raise AudioError(path, "holds no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(path, "holds NaN or infinite samples")
    out = (data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)) if mono else data  # mono: a view, not a copy
    if sample_rate is not None and rate != sample_rate:
        out = soxr.resample(out, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
        rate = sample_rate
    return np.ascontiguousarray(out), rate


def read_blocks(f: sf.SoundFile, block: int) -> Iterator[np.ndarray]:
    """``f`` from where it stands to its end, as float32 ``(m, channels)`` blocks of ``block`` frames.

    ``f.blocks(block)``, except for MP3: python-soundfile seeks to where it thinks the file stands after
    every read, and a seek in an MP3 restarts libmpg123 without its bit reservoir, so every block edge
    came back with up to ~2000 wrong samples, zeros first (a 60 s speech MP3 at 44.1 kHz in blocks of
    65536: 13306 samples wrong by up to 0.49; 1.9 dB of SNR lost once resampled to 16 kHz). An MP3 is
    read through libsndfile's own read, with no seek between blocks: the samples of one whole read."""
    if f.format != "MP3" or not all(hasattr(sf, name) for name in ("_snd", "_ffi", "_error_check")):
        yield from f.blocks(block, dtype="float32", always_2d=True)
        return
    while True:
        out = np.empty((block, f.channels), np.float32)
        n = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", out.ctypes.data), block)
        sf._error_check(sf._snd.sf_error(f._file))
        if n <= 0:
            return
        yield out[:n]


def pcm16_ints(x: np.ndarray) -> np.ndarray:
    """``x`` in [-1, 1] as int16, rounded to nearest and clipped at full scale: the one place the
    16-bit grid is made (libsndfile would floor floats on the way to PCM, a -0.5 LSB bias)."""
    return np.clip(np.round(np.asarray(x) * 32768.0), -32768, 32767).astype(np.int16)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """Round to the 16-bit grid (clipping at full scale), kept as float32 so that what a later stage
    computes from it equals what it would compute from the written file."""
    return pcm16_ints(x).astype(np.float32) / np.float32(32768.0)


def audio_files_in(folder: str | Path, exclude: Iterable[Path] = (), problems: list[tuple[str, str]] | None = None) -> list[Path]:
    """Audio files under ``folder``, recursively, sorted, each real file once (a link to a file or
    folder already taken is skipped, so a folder that links to itself is walked once, not forever).
    Hidden files and folders (temporaries) and the folders in ``exclude`` (an output folder inside
    the input) are left out. A sub-folder that cannot be read, or a link that loops or leads nowhere,
    is appended to ``problems`` as (path, what is wrong) for the caller to report: never skipped in silence."""
    folder = Path(folder)
    skip = {Path(e).resolve() for e in exclude}
    seen_dirs: set[Path] = set()
    seen_files: set[Path] = set()
    found: list[Path] = []

    def unreadable(e: OSError) -> None:
        if problems is not None:
            problems.append((str(e.filename), f"cannot read this folder ({e.strerror})"))

    def real(path: Path) -> Path | None:
        try:
            return path.resolve(strict=True)
        except (RuntimeError, OSError):  # a link to itself, or to nothing
            if problems is not None:
                problems.append((str(path), "a symbolic link that loops or leads nowhere; skipped"))
            return None

    for root, dirs, files in os.walk(folder, followlinks=True, onerror=unreadable):
        real_root = Path(root).resolve()
        if real_root in seen_dirs or real_root in skip:
            dirs[:] = []
            continue
        seen_dirs.add(real_root)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if path.suffix.lower() not in AUDIO_EXTENSIONS or name.startswith("."):
                continue
            real_path = real(path)
            if real_path is not None and real_path not in seen_files:
                seen_files.add(real_path)
                found.append(path)
    return sorted(found)


NAME_MAX = 255  # bytes in one file name on Linux file systems


def fit_name(stem: str, suffix: str, room: int = 0) -> str:
    """``stem + suffix``, its stem cut (and marked with a hash of the whole, so names stay unique)
    where the name would pass :data:`NAME_MAX` bytes less ``room``: a valid long input name must
    not make a derived name (an output, a clip, a temporary) that the file system refuses."""
    name = stem + suffix
    if len(os.fsencode(name)) <= NAME_MAX - room:
        return name
    mark = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:10]
    keep = NAME_MAX - room - len(os.fsencode(suffix + mark))
    cut = os.fsencode(stem)[:keep].decode("utf-8", errors="ignore") if stem.isprintable() else os.fsdecode(os.fsencode(stem)[:keep])
    return cut + mark + suffix


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """A sibling name for writing ``path``: hidden, unique per process (``pid``, default this one),
    same extension (soundfile picks the format from the extension), never too long for the file system."""
    tag = f".tmp{os.getpid() if pid is None else pid}"
    return path.with_name("." + fit_name(path.stem, tag + path.suffix, room=1))


_TEMPORARY = re.compile(r"^\.(?P<stem>.*)\.tmp(?P<pid>\d+)(?P<suffix>\.[^.]*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path, names: set[str] | None = None, any_writer: bool = False) -> list[Path]:
    """Delete the temporaries (see :func:`temporary_name`) that processes no longer running left in
    ``folder`` when killed mid-write; with ``names``, only those of these final file names. A
    temporary of a live process (a concurrent writer) is left alone, unless ``any_writer``: for a
    caller that holds the folder's lock with its own writes done, to whom a live writer can only be a
    worker orphaned by a killed run (a pool's worker outlives its ``kill -9``ed parent for a while).
    Returns what was removed."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMPORARY.match(entry.name)
            if m is None or (not any_writer and _alive(int(m["pid"]))):
                continue
            if names is not None and not any(temporary_name(Path(folder) / n, int(m["pid"])).name == entry.name for n in names):
                continue
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write to; on success rename it to ``path``, on failure remove it.
    A process killed mid-write leaves only a hidden ``.*.tmp*`` file, never a partial ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        # libsndfile and torch.save report a full disk as a codec or zip error ("System error.",
        # "problem with initialization of the flac decoder"): say what happened, while the
        # temporary still fills the disk
        full = isinstance(e, (RuntimeError, AssertionError)) and _disk_full(path.parent)
        with contextlib.suppress(OSError):
            tmp.unlink()
        if full or (isinstance(e, OSError) and e.errno == errno.ENOSPC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        if isinstance(e, OSError) and e.filename is None:  # name the file the error is about
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def _disk_full(folder: Path) -> bool:
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < (1 << 20)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")  # a non-UTF-8 file name keeps its bytes


def write_audio(path: str | Path, x: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write ``x`` (float, ``(n,)`` or ``(n, channels)``) atomically; format from the extension."""
    path = Path(path)
    if subtype == "PCM_16":
        # round to int16 here: libsndfile scales floats by 32767 on the way in and 32768 on the way
        # out, so passing floats would not give back to_pcm16(x); integers round-trip exactly
        x = pcm16_ints(x)
    elif subtype.startswith("PCM"):
        x = np.clip(x, -1.0, 1.0)
    with atomic_path(path) as tmp, sound_source(tmp, "w+b") as target:
        sf.write(target, x, sample_rate, subtype=subtype, format=path.suffix.lstrip(".").upper() or None)
