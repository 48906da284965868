"""``pipeline upsample``: every input through the model its measured band calls for, with a progress bar.

Per file: where its spectrum really ends is measured (:mod:`preprocessing.bandwidth`), then the
narrowest shipped model whose input band reaches that cut-off is used (an 8 kHz call, or a 16 kHz
file whose content stops near 4 kHz, goes to the 8 kHz model), so that no real band is thrown away;
a recording already wideband at the output rate, or wider than any model takes, is copied in band
and never re-invented. ``--model`` or ``--checkpoint`` (or ``upsampling.checkpoint``) forces one
network for every file instead. A finished output is skipped (``overwrite`` redoes it), so that a
rerun does no model work and an interrupted run finishes only what is missing.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from tqdm.auto import tqdm

from audio_superres.models.device import DeviceError, resolve_device
from audio_superres.models.packaged import ShippedModel, checkpoint_path, choose_model
from audio_superres.preprocessing.audio import AudioError, audio_info
from audio_superres.preprocessing.bandwidth import Bandwidth, measure_file_bandwidth
from audio_superres.settings import UpsamplingSettings

from .adapter import UpsampleError, Upsampler, load_upsampler
from .chunking import ChunkPlan
from .files import FileResult, copy_file, upsample_file
from .folders import plan_outputs, prepare_output_folders
from .jobs import COPY, Job


@dataclass
class UpsampleSummary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    wall: float = 0.0
    routes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        speed = f" ({self.seconds / self.wall:.1f}x real time)" if self.wall > 0 and self.seconds > 0 else ""
        how = ", ".join(f"{n} {route}" for route, n in sorted(self.routes.items()))
        return f"upsample: {self.done} file(s) done" + (f" ({how})" if how else "") + f", {self.skipped} already done, {self.failed} failed; {self.seconds:.1f} s of audio in {self.wall:.1f} s{speed}"


def _say(line: str) -> None:
    """One line on stderr that does not break the progress bar."""
    tqdm.write(line, file=sys.stderr)


def _describe(band: Bandwidth) -> str:
    if band.silent:
        return f"{band.sample_rate} Hz, silent"
    return f"{band.sample_rate} Hz, " + ("full band" if band.full_band else f"content to {band.cutoff_hz / 1000:.2f} kHz")


def plan_job(source: Path, output: Path, rate: int, forced: Upsampler | None) -> Job:
    """Measure ``source`` and choose its route; raises :class:`AudioError` for a file that cannot be read."""
    info = audio_info(source)
    try:
        band = measure_file_bandwidth(source)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(source, f"cannot decode ({str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__})") from None
    measured = _describe(band)
    if forced is not None:
        lost = "" if band.silent or band.cutoff_hz <= forced.low_rate / 2 else f"; note: its input band ends at {forced.low_rate / 2000:g} kHz, the file's real band above that is replaced"
        return Job(source, output, info.duration, "checkpoint", f"{source}: {measured} -> the given model{_resampled(info.samplerate, forced.low_rate)}{lost}")
    model: ShippedModel | None = None if band.silent else choose_model(band.cutoff_hz, band.sample_rate, rate)
    if model is None:
        wideband = band.full_band and band.sample_rate >= rate
        why = "silent" if band.silent else "already wideband" if wideband else "no installed model keeps its whole band"
        return Job(source, output, info.duration, COPY, f"{source}: {measured} -> {COPY} at {rate} Hz ({why})")
    return Job(source, output, info.duration, model.name, f"{source}: {measured} -> {model.name}{_resampled(info.samplerate, model.low_rate)}")


def _resampled(rate: int, model_rate: int) -> str:
    return "" if rate == model_rate else f" ({rate} Hz resampled to the model's input rate {model_rate} Hz)"


class ModelCache:
    """Shipped models loaded on first use, once per process (threads share them)."""

    def __init__(self, settings: UpsamplingSettings, device: str | None):
        self.settings, self.device = settings, device
        self._models: dict[str, Upsampler] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Upsampler:
        with self._lock:
            if name not in self._models:
                self._models[name], _ = load_upsampler(checkpoint_path(name), self.settings, self.device)
            return self._models[name]


def _plan_all(pairs, rate, forced, overwrite, summary, quiet) -> list[Job]:
    jobs = []
    for src, dst in pairs:
        if dst.exists() and not overwrite:
            summary.skipped += 1
            continue
        try:
            job = plan_job(src, dst, rate, forced)
        except AudioError as e:
            summary.failed += 1
            summary.errors.append(str(e))
            _say(f"error: {e}")
            continue
        if not quiet:
            _say(f"note: {job.note}")
        jobs.append(job)
    return jobs


def upsample_paths(
    inputs: list[str | Path],
    output: str | Path | None,
    settings: UpsamplingSettings,
    forced: Upsampler | None = None,
    rate: int = 16000,
    overwrite: bool = False,
    device: str | None = None,
    quiet: bool = False,
    checkpoint: str | Path | None = None,
) -> UpsampleSummary:
    """``pipeline upsample``; see the module docstring. Errors are printed as they happen (one line
    each) and counted; the other inputs go on. Raises :class:`UpsampleError` when there is nothing
    to do (no input gives a file), an output folder cannot be written, or ``upsampling.backend=dask``
    cannot use its cluster. ``checkpoint``: the file ``forced`` was loaded from, which the Dask
    workers then load (without it, ``forced`` itself is sent to each worker)."""
    if settings.backend == "dask":  # no Dask, or no address: said before every file is measured
        from .cluster import check_settings

        check_settings(settings)
    if forced is not None:
        rate = forced.high_rate
    pairs, errors = plan_outputs(inputs, output, rate)
    if not pairs:
        raise UpsampleError("; ".join(errors) if errors else "no inputs")
    prepare_output_folders(pairs)
    summary = UpsampleSummary(failed=len(errors), errors=list(errors))
    for line in errors:
        _say(f"error: {line}")
    jobs = _plan_all(pairs, rate, forced, overwrite, summary, quiet)
    models = ModelCache(settings, device)
    on_gpu = forced.device.type == "cuda" if forced is not None else _device_type(device or settings.device) == "cuda"
    # several files at once on a GPU: while one file's windows are on the GPU, others are decoded,
    # cross-faded and written (numpy, soundfile and torch release the GIL for that work)
    workers = settings.workers or (4 if on_gpu else 1)
    lock = threading.Lock()
    start = time.perf_counter()
    total = round(sum(j.seconds for j in jobs), 1)
    with tqdm(
        total=total, desc="upsample", unit="s", disable=quiet or not jobs or not sys.stderr.isatty(), dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]"
    ) as bar:

        def advance(seconds: float) -> None:
            with lock:
                bar.update(min(seconds, max(0.0, bar.total - bar.n)))  # never past the total: no negative ETA

        def one(job: Job) -> FileResult:
            done = [0.0]

            def progress(n: int, per_second: int) -> None:
                done[0] += n / per_second
                advance(n / per_second)

            try:
                if job.route == COPY:
                    result = copy_file(job.source, job.output, rate, settings.output_subtype, lambda n: progress(n, rate))
                else:
                    up = forced if forced is not None else models.get(job.route)
                    plan = ChunkPlan.from_settings(settings, up.low_rate)
                    result = upsample_file(job.source, job.output, up, plan, settings.output_subtype, lambda n: progress(n, up.low_rate))
            except UpsampleError as e:  # a shipped model that cannot be loaded
                result = FileResult(job.source, None, error=f"{job.source}: {e}")
            advance(max(0.0, job.seconds - done[0]))  # a failed file's unread seconds count as passed too
            return result

        with ThreadPoolExecutor(max_workers=workers) as pool:  # (threads start only when used)
            if settings.backend == "dask":  # each worker loads a model once and takes file after file
                from .cluster import upsample_on_cluster

                results = upsample_on_cluster(jobs, settings, rate, device, forced, checkpoint, lambda job: advance(job.seconds))
            elif workers == 1:  # in this thread, whose torch pool is warm: another thread's ran the model 1.2x slower
                results = zip(jobs, map(one, jobs))
            else:
                results = zip(jobs, pool.map(one, jobs))
            for job, result in results:
                _count(summary, job, result, settings.output_subtype, quiet)
    summary.wall = time.perf_counter() - start
    if not quiet:
        print(summary.line())
    return summary


def _count(summary: UpsampleSummary, job: Job, result: FileResult, subtype: str, quiet: bool) -> None:
    """One finished file into the summary, with its error or clipping note said as it comes."""
    if result.error:
        summary.failed += 1
        summary.errors.append(result.error)
        _say(f"error: {result.error}")
        return
    summary.done += 1
    summary.seconds += result.seconds
    summary.routes[job.route if job.route != "checkpoint" else "with the given model"] += 1
    if result.peak > 1.0 and subtype != "FLOAT" and not quiet:
        _say(f"note: {job.output}: peaks at {20 * math.log10(result.peak):+.1f} dBFS and was clipped to the {subtype} full scale; --set upsampling.output_subtype=FLOAT keeps it")


def _device_type(name: str) -> str:
    """Where the shipped models will run (models/device.py decides); a GPU asked for but absent
    fails when the first model loads, with its own one-line error."""
    try:
        return resolve_device(name).type
    except DeviceError:
        return "cpu"
