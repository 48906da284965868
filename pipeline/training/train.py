"""``pipeline train``: fit a model to the clip pairs of ``data.output_dir/splits``.

:func:`train` reads top to bottom as a short sequence of named steps: processes and device
(:mod:`.processes`), data (:mod:`.loaders`), model (:mod:`.model`), optimiser and schedule
(:mod:`.optimiser`), resume (:mod:`.progress`), then the loop: :func:`train_one_epoch`, validation
(:mod:`.validation`) and the files (:mod:`.run_files`). Writes to ``training.run_dir``:

* ``last.pt`` after every validation and ``best.pt`` when the validation loss is the lowest so far
  (see :mod:`models.checkpoint`; with ``training.ema_decay`` the weights validated and kept are the
  moving average of the trained ones, a cheap ensemble over the last ~``1 / (1 - decay)`` steps); ``history.csv`` (one row per validation: normally one per epoch,
  plus one where ``max_steps`` stops a run mid-epoch; columns ``train_loss``, ``val_loss``, each
  loss term as ``train_loss_<term>`` / ``val_loss_<term>``, the scores ``val_snr``, ``val_lsd``,
  ``val_lsd_hf``, and ``best``) and ``curves.png`` (redrawn at most every 30 s and at the end).

The loss is ``mse_weight * MSE + stft_weight * (multi-resolution STFT loss)`` plus every term of
the model's own ``training_losses(pred, target)`` if it has one (:mod:`models.losses`); the
validation loss is the same sum, so best.pt is the best by the objective the model was trained on.

Single process (CPU or one GPU)::

    pipeline train --set data.output_dir=data/clips --set training.run_dir=runs/unet
    pipeline train ... --resume            # continue exactly where last.pt left off

Several GPUs of one host, with DistributedDataParallel (one process per GPU; each process takes
``training.batch_size`` clips per step, so the global batch is ``N * batch_size``)::

    torchrun --standalone --nproc_per_node=4 -m audio_superres.pipeline.cli train --set training.run_dir=runs/unet

Rank 0 alone validates, logs and writes files; the others wait for it. On CPU the processes talk
through gloo, on CUDA through NCCL.
"""

from __future__ import annotations

import inspect
import math
import time
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
from .model import Networks, build_networks, update_ema
from .optimiser import make_optimizer, param_groups  # noqa: F401  (param_groups: benchmarks/bench_train.py imports it from here)
from .processes import Processes, broadcast, gather, setup_processes
from .progress import Progress, resume_run, training_checkpoint
from .run_files import Curves, save_checkpoints, write_history
from .validation import autocast, validate

LOG_EVERY = 10  # steps between progress-bar updates (each one waits for the GPU)
PLOT_EVERY_S = 30.0  # curves.png is redrawn at most this often, and when the run ends
# a batch whose loss or gradient is not finite is skipped (digital silence, an odd augmentation);
# this many in a row means the run itself has diverged, and it stops
MAX_BAD_STEPS_IN_A_ROW = 20


@dataclass
class TrainSummary:
    run_dir: Path
    epochs: float  # epochs done, a partial one as a fraction
    steps: int
    best_epoch: int | None
    best_val_loss: float
    val: dict = field(default_factory=dict)  # scores of the last validation
    stopped: str = "done"  # done | max_steps | early_stop | already_done | time_limit
    seconds: float = 0.0

    def line(self) -> str:
        best = f"best val loss {self.best_val_loss:.4g} at epoch {self.best_epoch}" if self.best_epoch is not None else "no validation"
        last = f"; last val SNR {self.val['val_snr']:.2f} dB, LSD {self.val['val_lsd']:.3f}, LSD-HF {self.val['val_lsd_hf']:.3f}" if self.val else ""
        why = {"done": "", "max_steps": " (max_steps reached)", "early_stop": " (early stop: patience reached)", "already_done": " (already finished; nothing to do)", "time_limit": " (training.max_minutes reached; --resume goes on)"}[self.stopped]
        return f"train: {self.steps} steps ({self.epochs:.3g} epochs) in {self.seconds:.1f} s{why}; {best}{last}; checkpoints in {self.run_dir}"


@dataclass
class Run:
    """What every step of a run reads: its settings, its processes, its folder and its clock."""

    settings: Settings
    procs: Processes
    quiet: bool
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

    Raises :class:`TrainingError` (one line) when the run cannot start, and
    :class:`TrainingDiverged` when the loss stops being finite (``last.pt`` then holds the last
    good state)."""
    procs = setup_processes(settings.training.device)
    try:
        return _train(Run(settings, procs, quiet), resume)
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

    # resume: weights, optimiser, schedule, RNG states and place in the data order from last.pt
    progress = Progress()
    if resume:
        progress = resume_run(run.last_path, settings, clips.data, nets, optimizer, scheduler, procs)
        run.say(f"train: resuming {run.last_path} at epoch {progress.epochs_done + 1}, step {progress.step}")
    if progress.step >= max_steps or progress.epochs_done >= t.epochs:
        return finish(run, progress, loaders.steps_per_epoch, "already_done")
    run.say(describe(run, nets, clips, loaders))

    # the loop: an epoch on every process; rank 0 validates and saves while the others wait
    curves, stopped = Curves(run.run_dir, PLOT_EVERY_S, rows_drawn=len(progress.history)), "done"
    while progress.epochs_done < t.epochs:
        trained = train_one_epoch(run, nets, optimizer, scheduler, loaders, progress, max_steps)
        rngs = gather(rng_state())  # every process's, for the checkpoint
        if procs.master:
            improved = validate_epoch(run, nets.scored, loaders.val, clips, progress, trained)
            save_checkpoints(run.run_dir, training_checkpoint(settings, clips.data, nets, optimizer, scheduler, progress, rngs), best=improved)
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
        raise TrainingError(f"{run.last_path}: nothing to resume (no last.pt); run without --resume to start")
    if not resume and run.last_path.is_file():
        raise TrainingError(f"{run.run_dir} already holds a run (last.pt): pass --resume to continue it, or set training.run_dir to a new folder")
    if run.procs.master:
        remove_stale_temporaries(run.run_dir)  # what a killed run was writing (a checkpoint, history.csv, curves.png)


def describe(run: Run, nets: Networks, clips: Clips, loaders: Loaders) -> str:
    """The line that opens a run: model, device, processes, data."""
    n_params = sum(p.numel() for p in nets.raw.parameters())
    how = f"low-res made on the fly ({', '.join(clips.data['lowres'])})" if clips.on_the_fly else f"stored low-res ({clips.stored_lowres})"
    return (
        f"train: {run.settings.model.name} ({n_params / 1e6:.2f} M parameters) on {run.procs.device}"
        + (f" x {run.procs.world} processes" if run.procs.world > 1 else "")
        + f"; {len(loaders.train_set)} train / {len(clips.val_rows)} val clips, {how}{', cached' if loaders.cached else ''}; {loaders.steps_per_epoch} steps per epoch"
    )


def finish(run: Run, progress: Progress, steps_per_epoch: int, stopped: str) -> TrainSummary:
    summary = TrainSummary(run.run_dir, progress.epochs(steps_per_epoch), progress.step, progress.best_epoch, progress.best_val_loss, progress.val, stopped, time.perf_counter() - run.started)
    run.say(summary.line())
    return summary


# --- the loop ---------------------------------------------------------------------------------


@dataclass
class EpochTrained:
    train_terms: dict[str, float]  # mean loss terms over the epoch and the processes: train_loss, train_loss_<term>
    skipped: int  # batches skipped for a loss or gradient that was not finite
    lr: float  # the learning rate at the end
    started: float  # time.perf_counter() at the start


def train_one_epoch(run: Run, nets: Networks, optimizer: torch.optim.Optimizer, scheduler, loaders: Loaders, progress: Progress, max_steps: float) -> EpochTrained:
    """One epoch on every process (the rest of one when resuming mid-epoch), or less where
    ``max_steps`` or ``training.max_minutes`` stops it; ``progress`` counts the batches and steps."""
    t, device, started = run.t, run.procs.device, time.perf_counter()
    loaders.batches.set_epoch(progress.epochs_done, skip=progress.epoch_batches)
    nets.model.train()
    sums: dict[str, torch.Tensor] = {}
    n_batches, running, skipped, bad_in_a_row = 0, None, 0, 0
    bar = tqdm(loaders.train, desc=f"epoch {progress.epochs_done + 1}/{t.epochs}", unit="step", disable=run.quiet or not run.procs.master, dynamic_ncols=True, leave=False)
    for lr, hr in bar:
        lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
        loss, terms, grad_norm = forward_backward(nets.model, nets.raw, optimizer, lr, hr, run.loss_weights, t.grad_clip)
        # the gradients are averaged over processes, so a non-finite loss on any one of them
        # makes the norm non-finite on all: every process skips (or stops at) the same batch
        if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
            bad_in_a_row, skipped = bad_in_a_row + 1, skipped + 1
            if bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
                kept = f"{run.last_path} (step {read_checkpoint(run.last_path)['step']}) is kept" if run.last_path.is_file() else "no checkpoint was written yet"
                raise TrainingDiverged(
                    f"loss became {float(loss.detach()):g} (gradient norm {float(grad_norm):g}) for {bad_in_a_row} batches in a row, up to step {progress.step + 1}, "
                    f"epoch {progress.epochs_done + 1}; stopped before applying any; {kept}; try a lower training.learning_rate or grad_clip"
                )
            optimizer.zero_grad(set_to_none=True)
            progress.epoch_batches += 1  # the batch was drawn: resuming must not draw it again
            continue
        bad_in_a_row = 0
        optimizer.step()
        scheduler.step()
        if nets.ema is not None:
            update_ema(nets.ema, nets.raw, t.ema_decay, progress.step)
        progress.step += 1
        progress.epoch_batches += 1
        n_batches += 1
        for name, value in {"loss": loss.detach(), **terms}.items():
            sums[name] = sums.get(name, 0.0) + value
        if run.procs.master and not run.quiet and (n_batches % LOG_EVERY == 0 or n_batches == 1):
            running = float(loss.detach()) if running is None else 0.8 * running + 0.2 * float(loss.detach())
            bar.set_postfix(loss=f"{running:.4g}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if progress.step >= max_steps:
            break
        if t.max_minutes is not None and n_batches % LOG_EVERY == 0 and broadcast(run.out_of_time()):
            break  # out of time mid-epoch: validate and save here, as max_steps does
    bar.close()
    if progress.epoch_batches >= loaders.steps_per_epoch:
        progress.epochs_done, progress.epoch_batches = progress.epochs_done + 1, 0
    return EpochTrained(mean_over_processes(sums, n_batches, device), skipped, scheduler.get_last_lr()[0], started)


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
    """The epoch's mean loss terms, averaged over the processes, as ``train_loss`` / ``train_loss_<term>``."""
    names = sorted(sums)
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


def epoch_line(progress: Progress, improved: bool) -> str:
    row = progress.history[-1]
    return (
        f"epoch {row['epoch']}: train loss {row['train_loss']:.4g}, val loss {row['val_loss']:.4g}, "
        f"SNR {row['val_snr']:.2f} dB, LSD {row['val_lsd']:.3f}, LSD-HF {row['val_lsd_hf']:.3f}" + (" (best)" if improved else "")
    )


def why_stop(run: Run, progress: Progress, max_steps: float, steps_per_epoch: int) -> str:
    """``done`` to go on (or at the end), else ``max_steps``, ``early_stop`` or ``time_limit``."""
    t, stopped = run.t, "done"
    if progress.step >= max_steps:
        stopped = "max_steps" if t.max_steps is not None and progress.step < t.epochs * steps_per_epoch else "done"
    elif t.patience is not None and run.procs.master and progress.best_epoch is not None:
        since_best = len(progress.history) - 1 - max(i for i, r in enumerate(progress.history) if r["best"])
        stopped = "early_stop" if since_best >= t.patience else "done"
    return "time_limit" if stopped == "done" and run.out_of_time() else stopped
