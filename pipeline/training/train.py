"""``pipeline train``: fit a model to the clip pairs of ``data.output_dir/splits``.

:func:`train` reads top to bottom as named steps: processes and device (:mod:`.processes`), data
(:mod:`.loaders`), model (:mod:`.model`), optimiser and schedule (:mod:`.optimiser`), resume
(:mod:`.progress`), then the loop: :func:`train_one_epoch`, validation (:mod:`.validation`) and the
files (:mod:`.run_files`): ``last.pt`` (after every validation, every ``training.checkpoint_every``
steps and on Ctrl-C), ``best.pt`` (lowest validation loss; with ``training.ema_decay`` the moving
average), ``history.csv`` (one row per validation: train and val losses per term, ``val_snr``,
``val_lsd``, ``val_lsd_hf``, ``skipped``, ``best``) and ``curves.png``. The loss is ``mse_weight *
MSE + stft_weight * STFT loss`` plus the model's own ``training_losses`` (:mod:`models.losses`).

    pipeline train --set data.output_dir=data/clips --set training.run_dir=runs/bwe [--resume]
    torchrun --standalone --nproc_per_node=4 -m audio_superres.pipeline.cli train --set training.run_dir=runs/bwe

Under torchrun each process takes ``training.batch_size`` clips per step; rank 0 alone validates,
logs and writes files (gloo on CPU, NCCL on CUDA). One run at a time holds ``training.run_dir`` (a
lock: a second run is refused at once). Ctrl-C waits for the batch under way, writes ``last.pt``
(one process; under torchrun the last checkpoint stands) and stops; ``--resume`` goes on exactly.
"""

from __future__ import annotations

import functools
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from audio_superres.models.checkpoint import read_checkpoint, rng_state
from audio_superres.models.losses import training_loss
from audio_superres.preprocessing.audio import remove_stale_temporaries
from audio_superres.settings import Settings, TrainingSettings

from .errors import TrainingDiverged, TrainingError
from .loaders import Clips, Loaders, make_loaders, read_clips
from .messages import TrainSummary, describe, epoch_line, interrupted_line  # noqa: F401  (the CLI reads interrupted_line from here)
from .model import Networks, build_networks, update_ema
from .optimiser import make_optimizer, param_groups  # noqa: F401  (param_groups: benchmarks/bench_train.py imports it from here)
from .processes import Interrupts, Processes, broadcast, gather, setup_processes
from .progress import Progress, Tally, resume_run, training_checkpoint
from .run_files import Curves, hold_run_folder, nothing_to_resume, save_checkpoints, write_history
from .validation import autocast, validate

LOG_EVERY = 10  # steps between progress-bar updates (each one waits for the GPU)
PLOT_EVERY_S = 30.0  # curves.png is redrawn at most this often, and when the run ends
# a batch whose loss or gradient is not finite is skipped (digital silence, an odd augmentation);
# this many in a row (across epochs and validations) means the run itself has diverged, and it stops
MAX_BAD_STEPS_IN_A_ROW = 20


@dataclass
class Run:
    """What every step of a run reads: its settings, its processes, its folder and its clock."""

    settings: Settings
    procs: Processes
    quiet: bool
    interrupts: Interrupts = field(default_factory=Interrupts)  # Ctrl-C, held during a batch
    started: float = field(default_factory=time.perf_counter)

    @property
    def t(self) -> TrainingSettings:
        return self.settings.training

    @property
    def run_dir(self) -> Path:
        return Path(self.t.run_dir)

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def loss_weights(self) -> dict:
        return {"mse_weight": self.t.mse_weight, "stft_weight": self.t.stft_weight}

    def say(self, message: str) -> None:
        if self.procs.master and not self.quiet:
            tqdm.write(message)

    def out_of_time(self) -> bool:
        return self.t.max_minutes is not None and time.perf_counter() - self.started > 60 * self.t.max_minutes


# --- the run ----------------------------------------------------------------------------------


def train(settings: Settings, resume: bool = False, quiet: bool = False) -> TrainSummary:
    """Train ``settings.model`` on ``data.output_dir/splits/{train,val}.csv``; see the module doc.

    Raises :class:`TrainingError` (one line) when the run cannot start (another run holds
    ``training.run_dir``, among others), and :class:`TrainingDiverged` when the loss stops being
    finite (``last.pt`` then holds the last good state); ``KeyboardInterrupt`` (Ctrl-C) after writing
    ``last.pt`` of the state it stopped at (:func:`interrupted_line` says where ``--resume`` goes on)."""
    procs = setup_processes(settings.training.device)
    try:
        with hold_run_folder(Path(settings.training.run_dir), procs, resume), Interrupts() as interrupts:
            return _train(Run(settings, procs, quiet, interrupts), resume)
    finally:
        if procs.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(run: Run, resume: bool) -> TrainSummary:
    settings, t, procs = run.settings, run.t, run.procs
    check_run_dir(run, resume)

    # data: the splits say what the model learns (rates, low-res methods); their loaders, which may
    # decode every clip into memory, come once the model is known to build
    clips = read_clips(settings)

    # model: the same initial weights on every process (a resumed run's come from last.pt), then
    # its moving average, and the DDP wrapper that all-reduces the gradients
    nets = build_networks(settings, clips.data, procs, init_from=None if resume else t.init_from)
    if procs.world > 1:
        # buffers are not re-broadcast before each forward: the families' buffers are constants
        # (interpolation kernels, windows), identical on every process from the start
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers"
        nets.model = DistributedDataParallel(nets.raw, device_ids=[procs.device.index] if procs.device.type == "cuda" else None, **{no_sync: False})
    loaders = make_loaders(settings, clips, procs, run.quiet)

    # optimiser and schedule: warmup then cosine over the run's length (or lr_decay_steps)
    max_steps = min(t.max_steps or math.inf, t.epochs * loaders.steps_per_epoch)
    optimizer, scheduler = make_optimizer(nets.raw, t, max_steps)

    # resume: weights, optimiser, schedule, RNG states, place in the data order and the sums since
    # the last validation from last.pt
    progress, tally = Progress(), Tally()
    if resume:
        progress, tally = resume_run(run.last_path, settings, clips.data, nets, optimizer, scheduler, procs)
        run.say(f"train: resuming {run.last_path} at epoch {progress.epochs_done + 1}, step {progress.step}")
    unvalidated = tally.batches + tally.skipped > 0  # last.pt was written between validations
    if (progress.step >= max_steps or progress.epochs_done >= t.epochs) and not unvalidated:
        return finish(run, progress, loaders.steps_per_epoch, "already_done")
    run.say(describe(run, nets, clips, loaders))

    # the loop: an epoch on every process; rank 0 validates and saves while the others wait;
    # last.pt also every checkpoint_every steps, and on Ctrl-C (one process) at the batch it stopped after
    save_last = functools.partial(save_between_validations, run, clips, nets, optimizer, scheduler, progress, tally)
    curves, stopped, started_at = Curves(run.run_dir, PLOT_EVERY_S, rows_drawn=len(progress.history)), "done", progress.place
    while progress.epochs_done < t.epochs:
        try:
            trained = train_one_epoch(run, nets, optimizer, scheduler, loaders, progress, tally, max_steps, save_last)
        except KeyboardInterrupt:
            if procs.world == 1 and progress.place != started_at:
                save_last()  # the state after the last whole batch: what --resume continues from
            raise
        # past this point a Ctrl-C leaves last.pt as it was: resuming redoes the epoch's end
        if progress.epoch_batches >= loaders.steps_per_epoch:
            progress.epochs_done, progress.epoch_batches = progress.epochs_done + 1, 0
        tally.next_row()
        rngs, tallies = gather(rng_state()), gather(tally.state())  # every process's, for the checkpoint
        if procs.master:
            improved = validate_epoch(run, nets.scored, loaders.val, clips, progress, trained)
            save_checkpoints(run.run_dir, training_checkpoint(settings, clips.data, nets, optimizer, scheduler, progress, rngs, tallies), best=improved)
            write_history(run.run_dir, progress.history)
            curves.update(progress.history)
            run.say(epoch_line(progress, improved))
        stopped = broadcast(why_stop(run, progress, max_steps, loaders.steps_per_epoch))  # rank 0 decides for everyone
        if stopped != "done" or progress.step >= max_steps:
            break
    if procs.master:
        curves.update(progress.history, final=True)
    return finish(run, progress, loaders.steps_per_epoch, stopped)


def check_run_dir(run: Run, resume: bool) -> None:
    """``--resume`` needs a run to continue; without it, a run folder is never written over."""
    if resume and not run.last_path.is_file():
        raise nothing_to_resume(run.run_dir)
    if not resume and run.last_path.is_file():
        raise TrainingError(f"{run.run_dir} already holds a run (last.pt): pass --resume to continue it, or set training.run_dir to a new folder")
    if run.procs.master:
        remove_stale_temporaries(run.run_dir)  # what a killed run was writing (a checkpoint, history.csv, curves.png)


def finish(run: Run, progress: Progress, steps_per_epoch: int, stopped: str) -> TrainSummary:
    summary = TrainSummary(run.run_dir, progress.epochs(steps_per_epoch), progress.step, progress.best_epoch, progress.best_val_loss, progress.val, stopped, time.perf_counter() - run.started)
    run.say(summary.line())
    return summary


def save_between_validations(run: Run, clips: Clips, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, progress: Progress, tally: Tally) -> None:
    """``last.pt`` of the run now, between two validations (``history.csv`` is unchanged). Every
    process calls it (their RNG states and tallies are gathered), or one process alone in a run of one."""
    rngs, tallies = gather(rng_state()), gather(tally.state())
    if run.procs.master:
        save_checkpoints(run.run_dir, training_checkpoint(run.settings, clips.data, nets, optimizer, scheduler, progress, rngs, tallies), best=False)


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class EpochTrained:
    train_terms: dict[str, float]  # mean loss terms since the last validation, over the processes: train_loss, train_loss_<term>
    skipped: int  # batches skipped for a loss or gradient that was not finite
    lr: float  # the learning rate at the end
    started: float  # time.perf_counter() at the start (earlier for a run resumed between validations)


def train_one_epoch(
    run: Run, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, loaders: Loaders, progress: Progress, tally: Tally, max_steps: float, save_last: Callable[[], None]
) -> EpochTrained:
    """One epoch on every process (the rest of one when resuming mid-epoch), or less where
    ``max_steps`` or ``training.max_minutes`` stops it; ``progress`` counts the batches and steps
    (the caller moves it to the next epoch), ``tally`` the losses; ``save_last()`` every
    ``training.checkpoint_every`` steps. A Ctrl-C waits for the batch under way (see
    :class:`~.processes.Interrupts`), so that ``progress`` is always at a whole batch."""
    t, device = run.t, run.procs.device
    tally.started = time.perf_counter()
    loaders.batches.set_epoch(progress.epochs_done, skip=progress.epoch_batches)
    nets.model.train()
    n_batches, running = 0, None  # this call's batches trained, for the log and the clock
    bar = tqdm(loaders.train, desc=f"epoch {progress.epochs_done + 1}/{t.epochs}", unit="step", disable=run.quiet or not run.procs.master, dynamic_ncols=True, leave=False)
    try:
        for lr, hr in bar:
            if progress.step >= max_steps:
                break  # resumed from the run's last step, saved before its validation: only that is left
            with run.interrupts.held():
                loss = train_batch(run, nets, optimizer, scheduler, lr.to(device, non_blocking=True), hr.to(device, non_blocking=True), progress, tally)
            if loss is None:
                continue
            n_batches += 1
            if run.procs.master and not run.quiet and (n_batches % LOG_EVERY == 0 or n_batches == 1):
                running = float(loss) if running is None else 0.8 * running + 0.2 * float(loss)
                bar.set_postfix(loss=f"{running:.4g}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if progress.step >= max_steps:
                break
            if t.max_minutes is not None and n_batches % LOG_EVERY == 0 and broadcast(run.out_of_time()):
                break  # out of time mid-epoch: validate and save here, as max_steps does
            if t.checkpoint_every is not None and progress.step % t.checkpoint_every == 0 and progress.epoch_batches < loaders.steps_per_epoch:
                save_last()  # (at the end of an epoch, the validation saves)
    finally:
        bar.close()
    return EpochTrained(mean_over_processes(tally.sums, tally.batches, device), tally.skipped, scheduler.get_last_lr()[0], tally.started - tally.seconds_before)


def train_batch(run: Run, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, lr: torch.Tensor, hr: torch.Tensor, progress: Progress, tally: Tally) -> torch.Tensor | None:
    """One optimiser step on a batch, counted in ``progress`` and ``tally``: its loss, or None when the
    loss or gradient is not finite and the batch was skipped (:class:`TrainingDiverged` after
    ``MAX_BAD_STEPS_IN_A_ROW`` of those)."""
    loss, terms, grad_norm = forward_backward(nets.model, nets.raw, optimizer, lr, hr, run.loss_weights, run.t.grad_clip)
    # the gradients are averaged over processes, so a non-finite loss on any one of them
    # makes the norm non-finite on all: every process skips (or stops at) the same batch
    if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
        tally.bad_in_a_row += 1
        if tally.bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
            kept = f"{run.last_path} (step {read_checkpoint(run.last_path)['step']}) is kept" if run.last_path.is_file() else "no checkpoint was written yet"
            raise TrainingDiverged(
                f"loss became {float(loss.detach()):g} (gradient norm {float(grad_norm):g}) for {tally.bad_in_a_row} batches in a row, up to step {progress.step + 1}, "
                f"epoch {progress.epochs_done + 1}; stopped before applying any; {kept}; try a lower training.learning_rate or grad_clip"
            )
        optimizer.zero_grad(set_to_none=True)
        tally.skipped += 1
        progress.epoch_batches += 1  # the batch was drawn: resuming must not draw it again
        return None
    tally.bad_in_a_row = 0
    optimizer.step()
    scheduler.step()
    if nets.ema is not None:
        update_ema(nets.ema, nets.raw, run.t.ema_decay, progress.step)
    progress.step += 1
    progress.epoch_batches += 1
    tally.add(loss, terms)
    return loss.detach()


def forward_backward(
    model: nn.Module, raw_model: nn.Module, optimizer: torch.optim.Optimizer, lr: torch.Tensor, hr: torch.Tensor, loss_weights: dict, grad_clip: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One batch's gradients, clipped: ``(loss, terms, gradient norm before clipping)``. The caller
    checks they are finite before ``optimizer.step()``. ``model`` may be the DDP wrapper of
    ``raw_model`` (whose ``training_losses`` hook, if any, is used)."""
    with autocast(lr.device, raw_model):
        pred = model(lr)
    if pred.shape != hr.shape:
        raise TrainingError(f"model {type(raw_model).__name__} returned shape {tuple(pred.shape)} for input {tuple(lr.shape)}; expected {tuple(hr.shape)}")
    loss, terms = training_loss(pred, hr, model=raw_model, **loss_weights)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    return loss, terms, grad_norm


def mean_over_processes(sums: dict[str, torch.Tensor], n_batches: int, device: torch.device) -> dict[str, float]:
    """The epoch's mean loss terms, averaged over the processes, as ``train_loss`` / ``train_loss_<term>``;
    ``train_loss`` NaN when every batch was skipped (then on every process: they skip together)."""
    names = sorted(sums)
    if not names:
        return {"train_loss": math.nan}
    means = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=device) for k in names]) / max(n_batches, 1)
    if dist.is_initialized():
        dist.all_reduce(means)
        means /= dist.get_world_size()
    return {("train_loss" if k == "loss" else f"train_loss_{k}"): float(v) for k, v in zip(names, means.cpu())}


# --- validation and stopping --------------------------------------------------------------------


def validate_epoch(run: Run, model: nn.Module, loader, clips: Clips, progress: Progress, trained: EpochTrained) -> bool:
    """Validate ``model`` (rank 0), note a new best and add the history row; whether it is the best so far."""
    val = validate(model, loader, run.procs.device, run.loss_weights, clips.data["sample_rate"], clips.data["low_rate"])
    improved = val["val_loss"] < progress.best_val_loss
    if improved:
        progress.best_val_loss, progress.best_epoch = val["val_loss"], progress.epoch
    progress.val = val
    seconds = round(time.perf_counter() - trained.started, 3)
    progress.history.append({"epoch": progress.epoch, "step": progress.step, "lr": trained.lr, **trained.train_terms, **val, "skipped": trained.skipped, "best": improved, "seconds": seconds})
    return improved


def why_stop(run: Run, progress: Progress, max_steps: float, steps_per_epoch: int) -> str:
    """``done`` to go on (or at the end), else ``max_steps``, ``early_stop`` or ``time_limit``."""
    t, stopped = run.t, "done"
    if progress.step >= max_steps:
        stopped = "max_steps" if t.max_steps is not None and progress.step < t.epochs * steps_per_epoch else "done"
    elif t.patience is not None and run.procs.master and progress.best_epoch is not None:
        since_best = len(progress.history) - 1 - max(i for i, r in enumerate(progress.history) if r["best"])
        stopped = "early_stop" if since_best >= t.patience else "done"
    return "time_limit" if stopped == "done" and run.out_of_time() else stopped
