"""``pipeline splice``: cut a corpus of talks into aligned high-res / low-res clip pairs.

Recipe (TEDLIUM release 3)::

    pipeline splice --set data.input_dir=/corpora/TEDLIUM_release-3 --set data.output_dir=data/ted

reads every audio file under ``input_dir`` recursively (wav, flac, sph, ogg, mp3, ...), once each:
TEDLIUM's ``legacy/`` folders hold symbolic links to the talks in ``data/sph`` and are read once
through their real path. Plain PCM SPHERE is read by libsndfile; a shorten-compressed one is reported
as such. For VCTK or LibriSpeech, where a folder is a speaker, set ``data.talk_from=parent`` (and
``data.trim_seconds=0``): the folder then is the "talk" that ``split`` keeps whole.

For each file: mono (channels averaged), resampled to ``sample_rate`` with soxr HQ if needed, rounded
to 16 bits, ``trim_seconds`` cut from both ends, clips of ``clip_seconds`` every ``hop_seconds``,
clips under ``min_rms_db`` dropped, and for each clip its low-res twin made by the ``lowres`` method
from the 16-bit clip itself. Output layout under ``output_dir``::

    hr/<talk>/<clip_id>.flac     high-res clip, 16-bit, sample_rate
    lr/<talk>/<clip_id>.flac     low-res twin, 16-bit, sample_rate / factor
    manifest.csv                 one row per clip (paths relative to output_dir)
    failures.csv                 one row per file that could not be read (absent when none)
    .done/<key>.json             per-file completion record: how an interrupted run resumes

Files are processed in parallel (threads: decoding, resampling and encoding release the GIL). A file's
record is written, atomically, only after all its clips, so a killed run redoes exactly the files
without a record, and every audio file is written under a temporary name and renamed. A lock file
stops a second ``splice`` on the same ``output_dir`` while one runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from audio_superres.settings import DataSettings

from .audio import AUDIO_EXTENSIONS, AudioError, atomic_write_text, audio_files_in, fit_name, read_audio, remove_stale_temporaries, to_pcm16, write_audio
from .bandwidth import measure_file_bandwidth
from .cluster import ClusterError, check_backend
from .lowres import make_lowres
from .parallel import parallel_map

MANIFEST_COLUMNS = ["clip_id", "talk", "source", "start_s", "seconds", "hr_path", "lr_path", "rms_db", "sample_rate", "low_rate", "lowres"]


class SpliceError(Exception):
    """A problem that stops the whole stage before any work (bad folders, a concurrent run)."""


@dataclass(frozen=True)
class Source:
    """One input file: where it is, which talk it belongs to, and the key its clips are named by."""

    path: Path
    rel: str
    talk: str
    key: str


@dataclass
class SourceResult:
    source: Source
    status: str  # "done" | "skipped" | "failed"
    reason: str = ""
    seconds_in: float = 0.0
    rows: list[dict] = field(default_factory=list)
    resumed: bool = False


@dataclass
class SpliceSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = 0
    clips: int = 0
    seconds_in: float = 0.0
    seconds_kept: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None

    def line(self, unit: str = "talks") -> str:
        return (
            f"splice: {self.done} {unit} done ({self.resumed} already complete), {self.skipped} skipped, "
            f"{self.failed} failed; {self.clips} clips written; {self.seconds_in / 3600:.2f} h of audio in, "
            f"{self.seconds_kept / 3600:.2f} h kept"
        )


def _safe(name: str) -> str:
    return name.replace(os.sep, "__").replace("/", "__")


def find_sources(input_dir: str | Path, talk_from: str = "file", exclude: Path | None = None, problems: list[tuple[str, str]] | None = None) -> list[Source]:
    """Every audio file under ``input_dir`` (sorted, each real file once), with its talk and key.

    ``talk_from="file"``: the talk is the file stem (the relative path where stems collide).
    ``talk_from="parent"``: the talk is the folder holding the file (a speaker, as in VCTK).
    ``exclude`` (the output folder, if it lies inside the input) is not searched. What cannot be
    searched (an unreadable folder, a broken link) goes to ``problems`` as (path, what is wrong).
    """
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise SpliceError(f"{input_dir}: input folder does not exist (data.input_dir)" if not input_dir.exists() else f"{input_dir}: not a folder (data.input_dir)")
    # each real file once: TEDLIUM's legacy/ links, or any other link to a file already taken
    found_problems: list[tuple[str, str]] = [] if problems is None else problems
    paths = audio_files_in(input_dir, [exclude] if exclude is not None else [], found_problems)
    if problems is None and found_problems:  # no list to report them in: never skipped in silence
        raise SpliceError("; ".join(f"{path}: {why}" for path, why in found_problems))
    found = [(path, path.relative_to(input_dir).as_posix()) for path in paths]
    found.sort(key=lambda pr: pr[1])

    def unique(names: list[str], fallback: list[str]) -> list[str]:
        counts = pd.Series(names).value_counts()
        return [n if counts[n] == 1 else _safe(f) for n, f in zip(names, fallback)]

    rels = [rel for _, rel in found]
    if talk_from == "file":
        talks = unique([Path(r).stem for r in rels], [str(Path(r).with_suffix("")) for r in rels])
        keys = talks
    else:
        parents = [Path(r).parent for r in rels]
        talks = unique([p.name or input_dir.resolve().name for p in parents], [str(p) for p in parents])
        keys = [f"{t}__{k}" for t, k in zip(talks, unique([Path(r).stem for r in rels], [_safe(str(Path(r).with_suffix(""))) for r in rels]))]
    return [Source(path, rel, talk, key) for (path, rel), talk, key in zip(found, talks, keys)]


def _fingerprint(source: Source, settings: DataSettings) -> str:
    """What a completed file's record must match to be reused: its clip settings and the file itself."""
    st = source.path.stat()
    relevant = settings.model_dump(mode="json", include={"sample_rate", "factor", "trim_seconds", "clip_seconds", "hop_seconds", "min_rms_db", "lowres", "audio_format", "talk_from"})
    blob = json.dumps([relevant, source.rel, source.talk, source.key, st.st_size, st.st_mtime_ns], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clip_starts(n_samples: int, settings: DataSettings) -> range:
    """Start samples of the clips cut from a talk of ``n_samples``: after ``trim`` samples at each
    end, every ``hop`` samples, as long as a whole clip fits."""
    first, last = settings.trim_samples, n_samples - settings.trim_samples - settings.clip_samples
    return range(first, last + 1, settings.hop_samples) if last >= first else range(0)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale square wave is 0 dB)."""
    ms = float(np.mean(np.square(x, dtype=np.float64)))
    return 10 * np.log10(ms) if ms > 0 else -np.inf


def splice_source(source: Source, settings: DataSettings, output_dir: Path) -> SourceResult:
    """Cut one file into clip pairs under ``output_dir`` and record it as complete.

    A file already recorded with the same fingerprint is not read again. Returns a failed result,
    rather than raising, for a file that cannot be read, so that the other files go on.
    """
    record = output_dir / ".done" / f"{source.key}.json"
    try:
        fingerprint = _fingerprint(source, settings)
    except OSError as e:
        return SourceResult(source, "failed", f"cannot open: {e.strerror}")
    if record.is_file():
        with contextlib.suppress(ValueError, OSError):
            saved = json.loads(record.read_text(encoding="utf-8"))
            if saved.get("fingerprint") == fingerprint:
                return SourceResult(source, saved["status"], saved.get("reason", ""), saved["seconds_in"], saved["rows"], resumed=True)

    try:
        audio, _ = read_audio(source.path, settings.sample_rate)
    except AudioError as e:
        return SourceResult(source, "failed", e.problem)
    for i in range(0, len(audio), 1 << 20):  # in place, a block at a time: a 2-hour talk stays one array
        audio[i : i + (1 << 20)] = to_pcm16(audio[i : i + (1 << 20)])
    seconds_in = len(audio) / settings.sample_rate
    # a recording narrower than the clips' band would teach the model an empty high band
    band = measure_file_bandwidth(source.path)
    if not band.silent and band.cutoff_hz < settings.min_band_hz:
        why = f"its content ends at {band.cutoff_hz / 1000:.2f} kHz, below data.min_bandwidth_hz ({settings.min_band_hz:g} Hz): it would teach an empty high band"
        return SourceResult(source, "failed", why, seconds_in)
    ext = settings.audio_format
    hr_dir, lr_dir = output_dir / "hr" / _safe(source.talk), output_dir / "lr" / _safe(source.talk)
    starts = clip_starts(len(audio), settings)
    # what a killed run left half-written for this source's clips, and only those: with
    # talk_from=parent other sources of the same talk write into the same folders meanwhile
    own_names = {fit_name(f"{source.key}_{index:05d}", f".{ext}") for index in range(len(starts))}
    remove_stale_temporaries(hr_dir, own_names)
    remove_stale_temporaries(lr_dir, own_names)

    rows: list[dict] = []
    status, reason = "done", ""
    for index, start in enumerate(starts):
        clip = audio[start : start + settings.clip_samples]
        level = rms_db(clip)
        if level < settings.min_rms_db:
            continue
        clip_id = f"{source.key}_{index:05d}"
        clip_name = fit_name(clip_id, f".{ext}")  # a 250-byte source name still gives clip files
        hr_rel = f"hr/{_safe(source.talk)}/{clip_name}"
        lr_rel = f"lr/{_safe(source.talk)}/{clip_name}"
        try:
            write_audio(output_dir / hr_rel, clip, settings.sample_rate)
            write_audio(output_dir / lr_rel, make_lowres(clip, settings.factor, settings.lowres, settings.sample_rate), settings.low_rate)
        except (OSError, RuntimeError) as e:  # disk full, permissions (libsndfile raises RuntimeError): this file's clips are redone next run
            return SourceResult(source, "failed", f"cannot write its clips to {output_dir}: {e.strerror if isinstance(e, OSError) and e.strerror else e}")
        rows.append(
            {
                "clip_id": clip_id,
                "talk": source.talk,
                "source": source.rel,
                "start_s": round(start / settings.sample_rate, 6),
                "seconds": settings.clip_seconds,
                "hr_path": hr_rel,
                "lr_path": lr_rel,
                "rms_db": round(level, 2),
                "sample_rate": settings.sample_rate,
                "low_rate": settings.low_rate,
                "lowres": settings.lowres,
            }
        )
    if not starts:
        status, reason = "skipped", f"too short: {seconds_in:.1f} s gives no {settings.clip_seconds:g} s clip after trimming {settings.trim_seconds:g} s from each end"
    elif not rows:
        status, reason = "skipped", f"silent: all {len(starts)} clips are below min_rms_db {settings.min_rms_db:g} dB"

    try:
        atomic_write_text(record, json.dumps({"fingerprint": fingerprint, "status": status, "reason": reason, "seconds_in": seconds_in, "rows": rows}))
    except OSError as e:  # without its record the file is redone next run, so it counts as failed
        return SourceResult(source, "failed", f"cannot write its completion record {record}: {e.strerror or e}")
    return SourceResult(source, status, reason, seconds_in, rows)


@contextlib.contextmanager
def output_lock(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``output_dir`` for the stage; a second run is refused at once.
    The kernel drops the lock when the holder dies, so a ``kill -9`` leaves nothing stale."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        handle = open(output_dir / ".lock", "a+")
    except OSError as e:
        raise SpliceError(f"{output_dir}: output folder cannot be written ({e.strerror})") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpliceError(f"{output_dir}: another splice is writing to this folder (lock {output_dir / '.lock'} is held); wait for it or pick another data.output_dir") from None
        yield
    finally:
        handle.close()


def _check_writable(output_dir: Path) -> None:
    probe = output_dir / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise SpliceError(f"{output_dir}: output folder cannot be written ({e.strerror})") from None


def splice(settings: DataSettings, quiet: bool = False) -> SpliceSummary:
    """Run the whole stage (see the module docstring). Returns the summary; ``summary.failed > 0``
    means some files could not be read (listed in ``failures.csv``)."""
    output_dir = Path(settings.output_dir)
    if output_dir.resolve() == Path(settings.input_dir).resolve():
        raise SpliceError(f"{output_dir}: data.output_dir is data.input_dir; the clips need a folder of their own (set data.output_dir)")
    unsearchable: list[tuple[str, str]] = []  # listed in failures.csv beside the files that fail; the rest go on
    sources = find_sources(settings.input_dir, settings.talk_from, exclude=output_dir, problems=unsearchable)
    if not sources and unsearchable:  # nothing else to splice: what could not be searched is the whole answer
        raise SpliceError("; ".join(f"{path}: {why}" for path, why in unsearchable))
    if not sources:
        raise SpliceError(f"{settings.input_dir}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in this folder")
    with output_lock(output_dir):
        _check_writable(output_dir)
        # what a run killed while writing a record or the manifest left (clips: per file, below)
        remove_stale_temporaries(output_dir / ".done")
        remove_stale_temporaries(output_dir, {"manifest.csv", "failures.csv"})
        unit = "talks" if settings.talk_from == "file" else "files"
        summary = SpliceSummary(failed=len(unsearchable), failures=list(unsearchable))
        for path, why in unsearchable:
            tqdm.write(f"error: {path}: {why}", file=sys.stderr)
        by_key: dict[str, SourceResult] = {}
        if settings.backend == "dask":
            # workers run in other folders, maybe on other machines: absolute paths, and a lost file
            # comes back failed (listed in failures.csv, redone by the next run), never missing
            try:
                check_backend(settings.dask_address, "data")  # no Dask or no address: said before any bar
            except ClusterError as e:
                raise SpliceError(str(e)) from None
            cluster = {"dask_address": settings.dask_address or "", "on_error": lambda s, why: SourceResult(s, "failed", why), "setting": "data", "outputs": [output_dir]}
            absolute = [replace(s, path=s.path.absolute()) for s in sources]
            work = parallel_map(partial(splice_source, settings=settings, output_dir=output_dir.absolute()), absolute, desc="splice", unit=unit[:-1], quiet=quiet, **cluster)
        else:
            work = parallel_map(lambda s: splice_source(s, settings, output_dir), sources, settings.n_jobs, desc="splice", unit=unit[:-1], quiet=quiet)
        try:
            for result in work:
                by_key[result.source.key] = result
                if result.status == "failed":
                    tqdm.write(f"error: {result.source.path}: {result.reason}", file=sys.stderr)
                elif result.status == "skipped" and not quiet:
                    tqdm.write(f"skipped: {result.source.path}: {result.reason}", file=sys.stderr)
        except ClusterError as e:
            raise SpliceError(str(e)) from None
        for folder in (output_dir / ".done", *(output_dir / "hr").glob("*/"), *(output_dir / "lr").glob("*/")):  # lock held, our writes done: any
            remove_stale_temporaries(folder, any_writer=True)  # writer's temporary is a killed run's (a Dask worker, a pool worker it orphaned)

        rows: list[dict] = []
        for source in sources:  # input order, whatever order the workers finished in
            result = by_key[source.key]
            summary.resumed += result.resumed
            if result.status == "failed":
                summary.failed += 1
                summary.failures.append((str(source.path), result.reason))
                continue
            summary.seconds_in += result.seconds_in
            if result.status == "skipped":
                summary.skipped += 1
                summary.skips.append((str(source.path), result.reason))
            else:
                summary.done += 1
                rows.extend(result.rows)
        summary.clips = len(rows)
        summary.seconds_kept = len(rows) * settings.clip_seconds

        manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        summary.manifest = output_dir / "manifest.csv"
        failures_csv = output_dir / "failures.csv"
        target = summary.manifest
        try:
            atomic_write_text(target, manifest.to_csv(index=False))
            target = failures_csv
            if summary.failures:
                atomic_write_text(target, pd.DataFrame(summary.failures, columns=["path", "error"]).to_csv(index=False))
            else:
                target.unlink(missing_ok=True)
        except OSError as e:  # disk full: the clips are recorded, so a rerun only writes these tables
            raise SpliceError(f"{target}: cannot write ({e.strerror or e}); run splice again once it can be written") from None
    if not quiet:
        print(summary.line(unit))
    return summary
