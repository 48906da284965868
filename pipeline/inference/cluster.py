"""``upsampling.backend=dask``: upsample's files on the workers of a Dask cluster.

The driver measures every file and chooses its route as locally (:func:`.upsample.plan_job`), then
sends each worker a :class:`.upsample.Job` of absolute paths. A worker loads each model it is asked
for once (a shipped model by name, from its own install; a given checkpoint from its path), keeps it
for every later file, and writes the output with the same write-then-rename as locally
(:func:`.files.upsample_file`, :func:`.files.copy_file`); it sends back the small
:class:`.files.FileResult`. Lost workers and failures: :mod:`audio_superres.preprocessing.cluster`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

from audio_superres.models.packaged import SHIPPED, checkpoint_path
from audio_superres.preprocessing.audio import remove_stale_temporaries
from audio_superres.preprocessing.cluster import ClusterError, as_finished, check_backend, dask_client
from audio_superres.settings import UpsamplingSettings

from .adapter import UpsampleError, Upsampler, load_upsampler
from .chunking import ChunkPlan
from .files import FileResult, copy_file, upsample_file
from .jobs import COPY, Job

# on a worker: the models it has loaded, kept for the life of the process (its threads share them)
_MODELS: dict[tuple, Upsampler] = {}
_LOCK = threading.Lock()


def _worker_model(name: str, settings: UpsamplingSettings, device: str | None) -> Upsampler:
    key = (name, device, settings.device, settings.batch_size, settings.bf16)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key], _ = load_upsampler(checkpoint_path(name), settings, device)
        return _MODELS[key]


def check_settings(settings: UpsamplingSettings) -> None:
    """Before any file is measured: Dask is installed and an address is given, else a one-line
    :class:`UpsampleError`."""
    try:
        check_backend(settings.dask_address, "upsampling")
    except ClusterError as e:
        raise UpsampleError(str(e)) from None


def run_job(job: Job, settings: UpsamplingSettings, rate: int, device: str | None, checkpoint: str | None = None, model: Upsampler | None = None) -> FileResult:
    """On a worker: one file along its route. ``checkpoint`` (a path, or a shipped model's name) or
    ``model`` (the driver's, scattered once) is the network of route "checkpoint"."""
    if job.route == COPY:
        return copy_file(job.source, job.output, rate, settings.output_subtype)
    try:
        up = model if model is not None else _worker_model(checkpoint if job.route == "checkpoint" else job.route, settings, device)
    except UpsampleError as e:  # a model that cannot be loaded here
        return FileResult(job.source, None, error=f"{job.source}: {e}")
    plan = ChunkPlan.from_settings(settings, up.low_rate)
    return upsample_file(job.source, job.output, up, plan, settings.output_subtype)


def _portable(checkpoint: str | Path) -> str:
    """How a worker finds the checkpoint: a shipped model by its name (its own install may lie
    elsewhere), any other file by its absolute path."""
    path = checkpoint_path(checkpoint)
    for shipped in SHIPPED:
        if path == shipped.path:
            return shipped.name
    return str(path.absolute())


def _nearest_folder(path: Path) -> Path:
    while not path.is_dir() and path != path.parent:
        path = path.parent
    return path


def upsample_on_cluster(
    jobs: list[Job], settings: UpsamplingSettings, rate: int, device: str | None, forced: Upsampler | None, checkpoint: str | Path | None, finished: Callable[[Job], None]
) -> Iterator[tuple[Job, FileResult]]:
    """``(job, result)`` for every job, in the order they finish on the workers of
    ``settings.dask_address``; ``finished(job)`` is called as each one does. ``forced`` (the network
    for route "checkpoint") goes to the workers as its ``checkpoint`` path when given, else as the
    object itself, once per worker. Raises :class:`UpsampleError` when the cluster cannot be used."""
    if not jobs:
        return
    sent = [replace(j, source=j.source.absolute(), output=j.output.absolute()) for j in jobs]
    outputs = sorted({j.output.parent for j in sent})

    def lost(job: Job, why: str) -> FileResult:
        return FileResult(job.source, None, error=f"{job.source}: {why}")

    try:
        with dask_client(settings.dask_address, "upsampling", [_nearest_folder(Path(os.path.commonpath(outputs)))]) as client:
            extra: dict = {"settings": settings, "rate": rate, "device": device}
            if forced is not None:
                if checkpoint is not None:
                    extra["checkpoint"] = _portable(checkpoint)
                else:
                    extra["model"] = client.scatter(forced, broadcast=True, hash=False)
            for i, result in as_finished(client, run_job, sent, lost, **extra):
                finished(jobs[i])
                yield jobs[i], result
    except ClusterError as e:
        raise UpsampleError(str(e)) from None
    # what workers killed mid-file left (their files were redone elsewhere)
    for folder in outputs:
        remove_stale_temporaries(folder, {j.output.name for j in sent if j.output.parent == folder})
