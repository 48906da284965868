"""Where a run stands (:class:`Progress`, and each process's :class:`Tally`), the checkpoint that
records it (:func:`training_checkpoint`, whose contents :class:`~audio_superres.models.checkpoint.TrainingCheckpoint`
declares) and a run continued from one (:func:`resume_run`): the same weights, optimiser, schedule,
RNG states, place in the data order and sums since the last validation, so that it goes on exactly
as an uninterrupted run would. What resume reads is checked first: a damaged field is one line."""

from __future__ import annotations

import contextlib
import math
import reprlib
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from audio_superres.models.checkpoint import DATA_KEYS, CheckpointData, TrainingCheckpoint, check_weights, damaged, read_checkpoint, set_rng_state
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

    @property
    def place(self) -> tuple[int, int]:
        """Where the run is in the data: whole epochs and batches drawn since."""
        return self.epochs_done, self.epoch_batches


@dataclass
class Tally:
    """This process's training since the last validation (what the next history row averages) and
    its current run of batches skipped as not finite (which stops a diverged run, across epochs).
    A checkpoint holds every process's :meth:`state`, so that a run resumed between validations
    writes the row an uninterrupted run would."""

    sums: dict = field(default_factory=dict)  # loss term -> sum over the batches trained (tensors on the device while training)
    batches: int = 0  # batches trained
    skipped: int = 0  # batches skipped: loss or gradient not finite
    bad_in_a_row: int = 0  # the current run of skipped batches (not reset by a validation)
    seconds_before: float = 0.0  # training time before the current call of train_one_epoch (a resumed run's earlier commands)
    started: float = field(default_factory=time.perf_counter)  # when the current call of train_one_epoch began

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        for name, value in {"loss": loss.detach(), **terms}.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.batches += 1

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def state(self) -> dict:
        """Plain numbers, for the checkpoint."""
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "batches": self.batches, "skipped": self.skipped, "bad_in_a_row": self.bad_in_a_row, "seconds": self.seconds()}

    @classmethod
    def from_state(cls, state: dict | None) -> Tally:
        if state is None:  # a checkpoint written before tallies: the next row averages what comes after it
            return cls()
        return cls(dict(state["sums"]), state["batches"], state["skipped"], state["bad_in_a_row"], state["seconds"])

    def next_row(self) -> None:
        """Start the sums of the next history row (after a validation)."""
        self.sums, self.batches, self.skipped, self.seconds_before, self.started = {}, 0, 0, 0.0, time.perf_counter()


def training_checkpoint(
    settings: Settings, data: CheckpointData, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, progress: Progress, rngs: list[dict], tallies: list[dict]
) -> TrainingCheckpoint:
    """The checkpoint of the run now; ``rngs`` and ``tallies`` hold every process's
    :func:`~audio_superres.models.checkpoint.rng_state` and :meth:`Tally.state`."""
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
        tally=tallies,
    )


def resume_run(path: Path, settings: Settings, data: CheckpointData, nets: Networks, optimizer, scheduler, procs: Processes) -> tuple[Progress, Tally]:
    """Load the state of checkpoint ``path`` (a run's ``last.pt``) into the networks, optimiser,
    schedule and this process's RNGs; return where the run stood, and this process's tally. Every
    field is checked before it is used: a damaged one is a one-line :class:`CheckpointError`."""
    checkpoint = TrainingCheckpoint.from_dict(read_checkpoint(path, map_location="cpu"), path)
    check_resumable(checkpoint, path, settings, data, procs.world)
    if checkpoint.tally is not None and len(checkpoint.tally) != len(checkpoint.rng):
        raise damaged(path, "tally", f"{len(checkpoint.tally)} entries for {len(checkpoint.rng)} processes")
    # with an average, model_state holds it and train_state the trained weights
    trained = "train_state" if checkpoint.train_state is not None else "model_state"
    load_weights(nets.raw, getattr(checkpoint, trained), path, trained)
    if nets.ema is not None:
        load_weights(nets.ema, checkpoint.model_state, path, "model_state")
    problem = optimizer_problem(checkpoint.optimizer, optimizer) or scheduler_problem(checkpoint.scheduler, scheduler)
    if problem:
        raise damaged(path, *problem)
    with using(path, "optimizer"):
        optimizer.load_state_dict(checkpoint.optimizer)
    with using(path, "scheduler"):
        scheduler.load_state_dict(checkpoint.scheduler)
    with using(path, "rng"):
        set_rng_state(checkpoint.rng[procs.rank])
    tally = Tally.from_state(checkpoint.tally[procs.rank] if checkpoint.tally is not None else None)
    return Progress(**{f.name: getattr(checkpoint, f.name) for f in fields(Progress)}), tally


def load_weights(net: torch.nn.Module, state: dict, path: Path, name: str) -> None:
    check_weights(state, path, name)
    with using(path, name):
        net.load_state_dict(state)


@contextlib.contextmanager
def using(path: Path, name: str):
    """Loading checkpoint field ``name`` into the run: what the checks did not foresee is still one line."""
    try:
        yield
    except Exception as e:  # noqa: BLE001  (load_state_dict and the RNG setters fail in many ways: RuntimeError, KeyError, ValueError, TypeError)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise damaged(path, name, f"{type(e).__name__}{': ' + first if first else ''}") from None


def _same_kind(saved, now) -> bool:
    """Whether a saved setting can stand for the current one: numbers for numbers, flags for flags, sequences alike."""
    if isinstance(now, bool) or now is None or isinstance(now, str):
        return type(saved) is type(now)
    if isinstance(now, int):
        return isinstance(saved, int) and not isinstance(saved, bool)
    if isinstance(now, float):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool)
    if isinstance(now, (list, tuple)):
        return isinstance(saved, (list, tuple)) and len(saved) == len(now) and all(_same_kind(a, b) for a, b in zip(saved, now))
    return True


OPTIMIZER_GROUP_KEYS = ("lr", "betas", "eps", "weight_decay")  # what AdamW reads and does not default


def optimizer_problem(saved: dict, optimizer: torch.optim.Optimizer) -> tuple[str, str] | None:
    """``("optimizer", what)`` when the saved AdamW state does not fit this run's optimiser: its
    groups, their settings, and each parameter's moments (keys, shapes); None when it does."""
    groups, saved_groups = optimizer.param_groups, saved["param_groups"]
    if len(saved_groups) != len(groups):
        return "optimizer", f"{len(saved_groups)} parameter groups, this run has {len(groups)}"
    params = {}  # saved parameter number -> (this run's parameter, amsgrad)
    for i, (was, now) in enumerate(zip(saved_groups, groups)):
        if len(was["params"]) != len(now["params"]):
            return "optimizer", f"param_groups[{i}] holds {len(was['params'])} parameters, this run's {len(now['params'])}"
        for key in OPTIMIZER_GROUP_KEYS:
            if key not in was:
                return "optimizer", f"param_groups[{i}] lacks {key}"
        for key, value in now.items():
            if key != "params" and key in was and not _same_kind(was[key], value):
                return "optimizer", f"param_groups[{i}].{key} is {reprlib.repr(was[key])}, not like {value!r}"
        params.update({number: (param, bool(was.get("amsgrad", False))) for number, param in zip(was["params"], now["params"])})
    for number, state in saved["state"].items():
        if number not in params:
            return "optimizer", f"state for parameter {number!r}, which no group holds"
        param, amsgrad = params[number]
        expected = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if amsgrad else set())
        if set(state) != expected:
            return "optimizer", f"state of parameter {number} holds {sorted(state)}, not {sorted(expected)}"
        for key in sorted(expected - {"step"}):
            moment = state[key]
            if not (isinstance(moment, torch.Tensor) and moment.is_floating_point() and moment.shape == param.shape):
                shown = f"a tensor of shape {tuple(moment.shape)}" if isinstance(moment, torch.Tensor) else type(moment).__name__
                return "optimizer", f"state[{number}].{key} is {shown}, not like its parameter {tuple(param.shape)}"
        step = state["step"]
        if not ((isinstance(step, torch.Tensor) and step.numel() == 1) or (isinstance(step, (int, float)) and not isinstance(step, bool))):
            return "optimizer", f"state[{number}].step is {type(step).__name__}, not a number"
    return None


SCHEDULER_KEYS = ("base_lrs", "last_epoch", "_step_count", "_last_lr", "lr_lambdas")  # what LambdaLR reads back


def scheduler_problem(saved: dict, scheduler) -> tuple[str, str] | None:
    """``("scheduler", what)`` when the saved schedule state does not fit this run's LambdaLR; None when it does."""
    now = scheduler.state_dict()
    for key in SCHEDULER_KEYS:
        if key not in saved:
            return "scheduler", f"it lacks {key}"
    for key, value in now.items():
        if key in saved and not _same_kind(saved[key], value):
            return "scheduler", f"{key} is {reprlib.repr(saved[key])}, not like {reprlib.repr(value)}"
    return None


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
    if len(checkpoint.rng) != world:  # (an empty list is refused as damaged before)
        raise TrainingError(f"{path}: the run was made by {len(checkpoint.rng)} process(es); resume it with the same number, not {world}")
