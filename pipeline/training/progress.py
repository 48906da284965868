"""Where a run stands (:class:`Progress`), the checkpoint that records it
(:func:`training_checkpoint`, whose contents :class:`~audio_superres.models.checkpoint.TrainingCheckpoint`
declares) and a run continued from one (:func:`resume_run`): the same weights, optimiser, schedule,
RNG states and place in the data order, so that it goes on exactly as an uninterrupted run would."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from audio_superres.models.checkpoint import DATA_KEYS, CheckpointData, TrainingCheckpoint, read_checkpoint, set_rng_state
from audio_superres.settings import Settings

from .errors import TrainingError
from .model import Networks, model_settings_then
from .processes import Processes


@dataclass
class Progress:
    """The run's counters and scores; each field is the checkpoint field of the same name."""

    epochs_done: int = 0  # whole epochs done
    epoch_batches: int = 0  # batches drawn in the current epoch (a skipped one counts: it was drawn)
    step: int = 0  # optimiser steps
    best_val_loss: float = math.inf
    best_epoch: int | None = None
    val: dict = field(default_factory=dict)  # the scores of the last validation
    history: list[dict] = field(default_factory=list)  # one row per validation (history.csv)

    @property
    def epoch(self) -> int:
        """1-based number of the epoch last trained, whole or not (the checkpoint's ``epoch``)."""
        return self.epochs_done + 1 if self.epoch_batches else self.epochs_done

    def epochs(self, steps_per_epoch: int) -> float:
        """Epochs done, a partial one as a fraction."""
        return self.epochs_done + self.epoch_batches / steps_per_epoch


def training_checkpoint(
    settings: Settings, data: CheckpointData, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, progress: Progress, rngs: list[dict]
) -> TrainingCheckpoint:
    """The checkpoint of the run now; ``rngs`` holds every process's :func:`~audio_superres.models.checkpoint.rng_state`."""
    return TrainingCheckpoint(
        family=settings.model.name,
        model=settings.model.model_dump(mode="json"),
        data=data,
        training=settings.training.model_dump(mode="json"),
        model_state=nets.scored.state_dict(),
        train_state=nets.raw.state_dict() if nets.ema is not None else None,
        epoch=progress.epoch,
        **{f.name: getattr(progress, f.name) for f in fields(Progress)},
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        rng=rngs,
    )


def resume_run(path: Path, settings: Settings, data: CheckpointData, nets: Networks, optimizer, scheduler, procs: Processes) -> Progress:
    """Load the state of checkpoint ``path`` (a run's ``last.pt``) into the networks, optimiser,
    schedule and this process's RNGs; return where the run stood."""
    checkpoint = TrainingCheckpoint.from_dict(read_checkpoint(path, map_location="cpu"), path)
    check_resumable(checkpoint, path, settings, data, procs.world)
    # with an average, model_state holds it and train_state the trained weights
    nets.raw.load_state_dict(checkpoint.train_state if checkpoint.train_state is not None else checkpoint.model_state)
    if nets.ema is not None:
        nets.ema.load_state_dict(checkpoint.model_state)
    optimizer.load_state_dict(checkpoint.optimizer)
    scheduler.load_state_dict(checkpoint.scheduler)
    set_rng_state(checkpoint.rng[procs.rank])
    return Progress(**{f.name: getattr(checkpoint, f.name) for f in fields(Progress)})


def check_resumable(checkpoint: TrainingCheckpoint, path: Path, settings: Settings, data: CheckpointData, world: int) -> None:
    """Resuming continues one run: the model, the data and the data order must be the same."""
    then = model_settings_then(checkpoint.model, settings)
    if then:
        raise TrainingError(f"{path}: the run was made with other model settings ({then}); use them, or a new training.run_dir")
    for key in DATA_KEYS:
        if checkpoint.data[key] != data[key]:
            raise TrainingError(f"{path}: the run was trained on data with {key}={checkpoint.data[key]!r}, the splits now give {data[key]!r}")
    for key in ("batch_size", "seed", "talk_sampling_power"):
        if checkpoint.training.get(key, type(settings.training).model_fields[key].default) != getattr(settings.training, key):
            raise TrainingError(f"{path}: the run used training.{key}={checkpoint.training.get(key)}; resuming with {getattr(settings.training, key)} would change the data order")
    if len(checkpoint.rng) != world:
        raise TrainingError(f"{path}: the run was made by {len(checkpoint.rng)} process(es); resume it with the same number, not {world}")
