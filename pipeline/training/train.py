"""``pipeline train``: fit a model to the clip pairs of ``data.output_dir/splits``.

One readable function, :func:`train`, top to bottom: processes and device, data, model, optimiser
and schedule, resume, the loop, validation, checkpoints. Writes to ``training.run_dir``:

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

import contextlib
import copy
import inspect
import math
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from audio_superres.settings import Settings
from audio_superres.preprocessing.audio import atomic_path, atomic_write_text, remove_stale_temporaries, to_pcm16

from audio_superres.pipeline.evaluation import metrics
from audio_superres.models.checkpoint import CheckpointError, read_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data import ClipDataset, EpochBatches, TalkBalancedSampler, cache_fits, load_split, make_loader, split_info
from audio_superres.models.device import DeviceError, resolve_device
from audio_superres.models.losses import training_loss
from audio_superres.models.packaged import checkpoint_path
from audio_superres.preprocessing.augment import Augmentation
from audio_superres.models.registry import build_model

MIN_LR_FRACTION = 0.1  # the cosine ends at this fraction of the peak learning rate, not at 0
LOG_EVERY = 10  # steps between progress-bar updates (each one waits for the GPU)
PLOT_EVERY_S = 30.0  # curves.png is redrawn at most this often, and when the run ends
# a batch whose loss or gradient is not finite is skipped (digital silence, an odd augmentation);
# this many in a row means the run itself has diverged, and it stops
MAX_BAD_STEPS_IN_A_ROW = 20


class TrainingError(Exception):
    """Training cannot start or go on; the message is one line."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""


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


# --- processes and device ---------------------------------------------------------------------


@dataclass
class Processes:
    rank: int
    local_rank: int
    world: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0


def setup_processes(device_setting: str) -> Processes:
    """Read torchrun's RANK / LOCAL_RANK / WORLD_SIZE (absent: one process) and pick the device."""
    rank, local_rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        device = resolve_device(device_setting, "training.device", index=local_rank if device_setting != "cpu" else None)
    except DeviceError as e:
        raise TrainingError(str(e)) from None
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        # rank 0 validates while the others wait in a collective: allow it more than the default 10 min
        bind = {"device_id": device} if use_cuda and "device_id" in inspect.signature(dist.init_process_group).parameters else {}
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(hours=2), **bind)
    return Processes(rank, local_rank, world, device)


def lr_factor(step: int, warmup_steps: int, decay_steps: int) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warmup, then a cosine down to
    ``MIN_LR_FRACTION`` at ``decay_steps``, flat after."""
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if step >= decay_steps:
        return MIN_LR_FRACTION
    progress = (step - warmup_steps) / max(1, decay_steps - warmup_steps)
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying biases and norm gains only hurts."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}]


@torch.no_grad()
def update_ema(average: nn.Module, model: nn.Module, decay: float, step: int) -> None:
    """Move ``average``'s weights towards ``model``'s: ``avg += (1 - d) * (w - avg)``, with ``d`` ramped
    up as ``min(decay, (1 + step) / (10 + step))`` so that the first steps are not held back by the
    initial weights (as in TensorFlow's ExponentialMovingAverage); buffers are copied."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(average.parameters()), list(model.parameters()), 1.0 - d)
    for a, b in zip(average.buffers(), model.buffers()):
        a.copy_(b)


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


# --- validation, history ----------------------------------------------------------------------


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, loss_weights: dict, sample_rate: int, low_rate: int) -> dict[str, float]:
    """Mean loss terms over the validation clips, and SNR / LSD / LSD-HF of each whole clip as the
    16-bit file the model would write (how ``shared/docs/metrics.md`` scores every system)."""
    model.eval()
    sums: dict[str, float] = {}
    pending = []
    n = 0
    # the scores are numpy FFTs, which release the GIL: threads score one batch while the device
    # runs the next
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for lr, hr in loader:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            with autocast(device, model):
                pred = model(lr)
            loss, terms = training_loss(pred, hr, model=model, **loss_weights)
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(lr)
            n += len(lr)
            for y, y_hat in zip(hr[:, 0].cpu().numpy(), pred[:, 0].float().cpu().numpy()):
                pending.append(pool.submit(metrics.score, y, to_pcm16(y_hat), sample_rate, low_rate))
        scores = [f.result() for f in pending]
    model.train()
    # loss terms as val_loss_<term>, scores as val_snr / val_lsd / val_lsd_hf: a model's own loss
    # term may be called "lsd" too
    out = {("val_loss" if k == "loss" else f"val_loss_{k}"): v / n for k, v in sums.items()}
    out.update({f"val_{k}": float(np.mean([s[k] for s in scores])) for k in ("snr", "lsd", "lsd_hf")})
    return out


def autocast(device: torch.device, model: nn.Module):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16) unless the family says
    ``train_bf16 = False`` (the research U-Nets: cuDNN's bf16 1-D convolutions of their shapes are
    several times slower than TF32 on an H200); full precision on CPU."""
    enabled = device.type == "cuda" and getattr(model, "train_bf16", True)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def write_history(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))


def plot_history(run_dir: Path, history: list[dict]) -> None:
    """``curves.png``: losses and validation scores by step."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = pd.DataFrame(history)
    fig = Figure(figsize=(12, 3.6))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.15, top=0.9, wspace=0.25)  # fixed: a layout engine costs more than the plot
    FigureCanvasAgg(fig)
    ax_loss, ax_snr, ax_lsd = fig.subplots(1, 3)
    ax_loss.plot(table["step"], table["train_loss"], "o-", label="train")
    ax_loss.plot(table["step"], table["val_loss"], "o-", label="val")
    if (table[["train_loss", "val_loss"]] > 0).all().all():
        ax_loss.set_yscale("log")
    ax_loss.set(title="loss", xlabel="step")
    ax_loss.legend()
    ax_snr.plot(table["step"], table["val_snr"], "o-")
    ax_snr.set(title="val SNR (dB)", xlabel="step")
    ax_lsd.plot(table["step"], table["val_lsd"], "o-", label="LSD")
    ax_lsd.plot(table["step"], table["val_lsd_hf"], "o-", label="LSD-HF")
    ax_lsd.set(title="val LSD", xlabel="step")
    ax_lsd.legend()
    with atomic_path(run_dir / "curves.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


@contextlib.contextmanager
def writing(path: Path):
    """Turn a failed write (full disk, read-only folder) into a one-line :class:`TrainingError`."""
    try:
        yield
    except OSError as e:
        raise TrainingError(f"{path}: cannot write: {e.strerror or e}") from None


def _gather(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` (all processes must call it)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _broadcast(obj):
    """Rank 0's ``obj`` on every process (all processes must call it)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def load_initial_weights(model: nn.Module, path: Path, settings: Settings, data: dict) -> None:
    """Load into ``model`` the weights of checkpoint ``path`` (``training.init_from``; ``packaged``:
    the model that ships), for a run of ``settings`` on ``data``: same family, architecture and rates. The loss
    weights (``model.bwe.lsd_weight`` and the like) may differ: fine-tuning with other ones is the point."""
    path = checkpoint_path(path)
    try:
        checkpoint = read_checkpoint(path, map_location="cpu")
    except CheckpointError as e:
        raise TrainingError(f"training.init_from: {e}") from None
    if checkpoint["family"] != settings.model.name:
        raise TrainingError(f"training.init_from: {path} holds a {checkpoint['family']} model; this run trains model.name={settings.model.name}")
    for key in ("sample_rate", "factor", "low_rate"):
        if int(checkpoint["data"][key]) != int(data[key]):
            raise TrainingError(f"training.init_from: {path} was trained with {key}={checkpoint['data'][key]}, these splits give {data[key]}")
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError:
        then = _model_settings_then(checkpoint, settings)
        raise TrainingError(f"training.init_from: {path}: its weights do not fit this run's model; it was made with {then or 'other settings'}") from None


def _model_settings_then(checkpoint: dict, settings: Settings) -> str:
    """``model.KEY=VALUE, ...``: the checkpoint's model settings that differ from this run's ('' if none)."""
    now = settings.model.model_dump(mode="json")
    return ", ".join(f"model.{k}={checkpoint['model'].get(k)!r}" for k in sorted(now) if checkpoint["model"].get(k) != now[k])


def _check_resumable(checkpoint: dict, path: Path, settings: Settings, data: dict, world: int) -> None:
    """Resuming continues one run: the model, the data and the data order must be the same."""
    then = _model_settings_then(checkpoint, settings)
    if then:
        raise TrainingError(f"{path}: the run was made with other model settings ({then}); use them, or a new training.run_dir")
    for key in ("sample_rate", "factor", "low_rate", "lowres"):
        if checkpoint["data"][key] != data[key]:
            raise TrainingError(f"{path}: the run was trained on data with {key}={checkpoint['data'][key]!r}, the splits now give {data[key]!r}")
    training_then = checkpoint.get("training", {})
    for key in ("batch_size", "seed", "talk_sampling_power"):
        if training_then.get(key, type(settings.training).model_fields[key].default) != getattr(settings.training, key):
            raise TrainingError(f"{path}: the run used training.{key}={training_then.get(key)}; resuming with {getattr(settings.training, key)} would change the data order")
    if len(checkpoint["rng"]) != world:
        raise TrainingError(f"{path}: the run was made by {len(checkpoint['rng'])} process(es); resume it with the same number, not {world}")


# --- the run ----------------------------------------------------------------------------------


def train(settings: Settings, resume: bool = False, quiet: bool = False) -> TrainSummary:
    """Train ``settings.model`` on ``data.output_dir/splits/{train,val}.csv``; see the module doc.

    Raises :class:`TrainingError` (one line) when the run cannot start, and
    :class:`TrainingDiverged` when the loss stops being finite (``last.pt`` then holds the last
    good state)."""
    t = settings.training
    procs = setup_processes(t.device)
    try:
        return _train(settings, procs, resume, quiet)
    finally:
        if procs.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(settings: Settings, procs: Processes, resume: bool, quiet: bool) -> TrainSummary:
    t0 = time.perf_counter()
    t = settings.training
    device, master = procs.device, procs.master
    say = (lambda msg: tqdm.write(msg)) if master and not quiet else (lambda msg: None)
    run_dir = Path(t.run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and not last_path.is_file():
        raise TrainingError(f"{last_path}: nothing to resume (no last.pt); run without --resume to start")
    if not resume and last_path.is_file():
        raise TrainingError(f"{run_dir} already holds a run (last.pt): pass --resume to continue it, or set training.run_dir to a new folder")
    if master:
        remove_stale_temporaries(run_dir)  # what a killed run was writing (a checkpoint, history.csv, curves.png)

    # data: the splits say how their clips were made; the model learns exactly that rate ratio
    clips_dir = Path(settings.data.output_dir)
    train_rows, val_rows = load_split(clips_dir, "train"), load_split(clips_dir, "val")
    info = split_info(train_rows, clips_dir / "splits" / "train.csv")
    val_info = split_info(val_rows, clips_dir / "splits" / "val.csv")
    if val_info != info:  # compared as the clips were made, before an on-the-fly factor
        raise TrainingError(f"{clips_dir / 'splits'}: train and val clips were made differently ({info} vs {val_info})")
    # any lowres_methods, even the data's own, make the input from the high-res clip: then the
    # stored low-res files need not exist (a compact copy of the clips carries only high-res ones),
    # and one set of clips trains a model for any data.factor (8, 4 or 2 kHz input from 16 kHz clips)
    on_the_fly = bool(t.lowres_methods)
    if on_the_fly and info["sample_rate"] == settings.data.sample_rate:
        info = {**info, "factor": settings.data.factor, "low_rate": settings.data.low_rate}
    if (info["sample_rate"], info["factor"]) != (settings.data.sample_rate, settings.data.factor):
        raise TrainingError(
            f"{clips_dir / 'splits' / 'train.csv'}: clips are {info['sample_rate']} Hz with factor {info['factor']}, "
            f"but data.sample_rate={settings.data.sample_rate} and data.factor={settings.data.factor}; use the settings that made the clips"
            + ("" if on_the_fly else ", or set training.lowres_methods to make the input from the high-res clips at any factor")
        )
    methods = list(t.lowres_methods) if on_the_fly else [info["lowres"]]
    data = {"sample_rate": info["sample_rate"], "factor": info["factor"], "low_rate": info["low_rate"], "lowres": methods}
    factor = info["factor"]

    # model: the same initial weights on every process (DDP also broadcasts rank 0's), then a
    # different dropout stream per process
    torch.manual_seed(t.seed)
    try:
        raw_model = build_model(settings.model, factor).to(device)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    if t.init_from is not None and not resume:  # a resumed run's weights come from last.pt
        load_initial_weights(raw_model, t.init_from, settings, data)
    torch.manual_seed(t.seed + procs.rank)
    np.random.seed(t.seed + procs.rank)
    random.seed(t.seed + procs.rank)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
    if t.mse_weight + t.stft_weight <= 0 and not callable(getattr(raw_model, "training_losses", None)):
        raise TrainingError(f"training.mse_weight and stft_weight are both 0 and model {settings.model.name} adds no loss of its own: nothing to minimise")
    # the weights that are validated, kept and shipped: the trained ones, or their moving average
    # (every process keeps the same one, from the same all-reduced updates)
    ema_model = copy.deepcopy(raw_model).requires_grad_(False) if t.ema_decay is not None else None
    scored_model = ema_model if ema_model is not None else raw_model
    # buffers are not re-broadcast before each forward: the families' buffers are constants
    # (interpolation kernels, windows), identical on every process from the start
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters else "broadcast_buffers"
    ddp_args = {"device_ids": [device.index] if device.type == "cuda" else None, no_sync: False}
    model = DistributedDataParallel(raw_model, **ddp_args) if procs.world > 1 else raw_model
    n_params = sum(p.numel() for p in raw_model.parameters())

    # loaders: every process walks its share of one seeded order; rank 0 alone validates
    cache_train = cache_fits(train_rows, not on_the_fly, t.cache_gb)
    train_set = ClipDataset(
        clips_dir, train_rows, factor, info["sample_rate"], methods if on_the_fly else None, t.gain_db, t.speed, t.crop_seconds,
        Augmentation(**t.augment.model_dump()), train=True, seed=t.seed, cache=cache_train, quiet=quiet or not master, name="train",
    )  # fmt: skip
    if t.talk_sampling_power == 1.0:
        sampler = DistributedSampler(train_set, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=t.seed)
    else:
        if "talk" not in train_rows.columns:
            raise TrainingError(f"{clips_dir / 'splits' / 'train.csv'}: no talk column, which training.talk_sampling_power needs; re-run `pipeline split`")
        sampler = TalkBalancedSampler(train_rows["talk"], train_rows["seconds"], t.talk_sampling_power, procs.world, procs.rank, t.seed)
    batches = EpochBatches(sampler, t.batch_size)
    pin = device.type == "cuda"
    train_loader = make_loader(train_set, t.num_workers, pin, t.seed, batch_sampler=batches)
    val_loader = None
    if master:
        val_set = ClipDataset(
            clips_dir, val_rows, factor, info["sample_rate"], methods if on_the_fly else None,
            train=False, seed=t.seed, cache=cache_fits(val_rows, not on_the_fly, t.cache_gb), quiet=quiet, name="val",
        )  # fmt: skip
        val_loader = make_loader(val_set, t.num_workers, pin, t.seed + 1, batch_size=t.batch_size)

    # optimiser and schedule: warmup then cosine over the run's length (or lr_decay_steps)
    optimizer = torch.optim.AdamW(param_groups(raw_model, t.weight_decay), lr=t.learning_rate, betas=(0.9, 0.99), fused=device.type == "cuda")
    steps_per_epoch = batches.full_length()
    max_steps = min(t.max_steps or math.inf, t.epochs * steps_per_epoch)
    decay_steps = t.lr_decay_steps or int(max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, t.warmup_steps, decay_steps))
    loss_weights = {"mse_weight": t.mse_weight, "stft_weight": t.stft_weight}

    epoch, epoch_batches, step = 0, 0, 0  # whole epochs done, batches done in the current one, optimiser steps
    best_val_loss, best_epoch, history, val = math.inf, None, [], {}
    if resume:
        checkpoint = read_checkpoint(last_path, map_location="cpu")
        _check_resumable(checkpoint, last_path, settings, data, procs.world)
        # with an average, model_state holds it and train_state the trained weights
        raw_model.load_state_dict(checkpoint.get("train_state", checkpoint["model_state"]))
        if ema_model is not None:
            ema_model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"][procs.rank])
        epoch, epoch_batches, step = checkpoint["epochs_done"], checkpoint["epoch_batches"], checkpoint["step"]
        best_val_loss, best_epoch, history, val = checkpoint["best_val_loss"], checkpoint["best_epoch"], checkpoint["history"], checkpoint["val"]
        say(f"train: resuming {last_path} at epoch {epoch + 1}, step {step}")
    if step >= max_steps or epoch >= t.epochs:
        summary = TrainSummary(run_dir, epoch + epoch_batches / steps_per_epoch, step, best_epoch, best_val_loss, val, "already_done", time.perf_counter() - t0)
        say(summary.line())
        return summary
    how = f"low-res made on the fly ({', '.join(methods)})" if on_the_fly else f"stored low-res ({info['lowres']})"
    say(
        f"train: {settings.model.name} ({n_params / 1e6:.2f} M parameters) on {device}"
        + (f" x {procs.world} processes" if procs.world > 1 else "")
        + f"; {len(train_set)} train / {len(val_rows)} val clips, {how}{', cached' if cache_train else ''}; {steps_per_epoch} steps per epoch"
    )

    stopped = "done"
    plotted_at, plotted_rows = time.perf_counter(), len(history)
    while epoch < t.epochs:
        # --- one epoch (or the rest of one, when resuming mid-epoch) ---
        epoch_start = time.perf_counter()
        batches.set_epoch(epoch, skip=epoch_batches)
        model.train()
        sums: dict[str, torch.Tensor] = {}
        n_batches, running, skipped, bad_in_a_row = 0, None, 0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{t.epochs}", unit="step", disable=quiet or not master, dynamic_ncols=True, leave=False)
        for lr, hr in bar:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            loss, terms, grad_norm = forward_backward(model, raw_model, optimizer, lr, hr, loss_weights, t.grad_clip)
            # the gradients are averaged over processes, so a non-finite loss on any one of them
            # makes the norm non-finite on all: every process stops at the same step
            if not (torch.isfinite(loss) and torch.isfinite(grad_norm)):
                bad_in_a_row += 1
                skipped += 1
                if bad_in_a_row >= MAX_BAD_STEPS_IN_A_ROW:
                    kept = f"{last_path} (step {read_checkpoint(last_path)['step']}) is kept" if last_path.is_file() else "no checkpoint was written yet"
                    raise TrainingDiverged(
                        f"loss became {float(loss.detach()):g} (gradient norm {float(grad_norm):g}) for {bad_in_a_row} batches in a row, "
                        f"up to step {step + 1}, epoch {epoch + 1}; stopped before applying any; {kept}; try a lower training.learning_rate or grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                epoch_batches += 1  # the batch was drawn: resuming must not draw it again
                continue
            bad_in_a_row = 0
            optimizer.step()
            scheduler.step()
            if ema_model is not None:
                update_ema(ema_model, raw_model, t.ema_decay, step)
            step += 1
            epoch_batches += 1
            n_batches += 1
            for name, value in {"loss": loss.detach(), **terms}.items():
                sums[name] = sums.get(name, 0.0) + value
            if master and not quiet and (n_batches % LOG_EVERY == 0 or n_batches == 1):
                current = float(loss.detach())
                running = current if running is None else 0.8 * running + 0.2 * current
                bar.set_postfix(loss=f"{running:.4g}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
            if step >= max_steps:
                break
            if t.max_minutes is not None and n_batches % LOG_EVERY == 0 and _broadcast(time.perf_counter() - t0 > 60 * t.max_minutes):
                break  # out of time mid-epoch: validate and save here, as max_steps does
        bar.close()
        if epoch_batches >= steps_per_epoch:
            epoch, epoch_batches = epoch + 1, 0
        epoch_number = epoch if epoch_batches == 0 else epoch + 1  # 1-based number of the epoch just trained

        # --- mean train loss over processes; validation, history and checkpoints on rank 0 ---
        names = sorted(sums)
        means = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64, device=device) for k in names]) / max(n_batches, 1)
        if dist.is_initialized():
            dist.all_reduce(means)
            means /= procs.world
        train_terms = {("train_loss" if k == "loss" else f"train_loss_{k}"): float(v) for k, v in zip(names, means.cpu())}
        rngs = _gather(rng_state())
        improved = False
        if master:
            val = validate(scored_model, val_loader, device, loss_weights, info["sample_rate"], info["low_rate"])
            improved = val["val_loss"] < best_val_loss
            if improved:
                best_val_loss, best_epoch = val["val_loss"], epoch_number
            row = {"epoch": epoch_number, "step": step, "lr": scheduler.get_last_lr()[0], **train_terms, **val, "skipped": skipped, "best": improved, "seconds": round(time.perf_counter() - epoch_start, 3)}
            history.append(row)
            checkpoint = {
                "family": settings.model.name,
                "model": settings.model.model_dump(mode="json"),
                "data": data,
                "training": t.model_dump(mode="json"),
                "model_state": scored_model.state_dict(),
                **({"train_state": raw_model.state_dict()} if ema_model is not None else {}),
                "epoch": epoch_number,
                "epochs_done": epoch,
                "epoch_batches": epoch_batches,
                "step": step,
                "best_val_loss": best_val_loss,
                "best_epoch": best_epoch,
                "val": val,
                "history": history,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": rngs,
            }
            with writing(run_dir):
                run_dir.mkdir(parents=True, exist_ok=True)
            # best before last: a run killed between the two resumes from the previous last.pt and
            # writes this best.pt again, where the other order would leave last.pt naming a best
            # epoch that best.pt does not hold
            if improved:
                save_checkpoint(best_path, checkpoint)
            save_checkpoint(last_path, checkpoint)
            with writing(run_dir / "history.csv"):
                write_history(run_dir, history)
            if time.perf_counter() - plotted_at > PLOT_EVERY_S:  # a plot costs about a second
                with writing(run_dir / "curves.png"):
                    plot_history(run_dir, history)
                plotted_at, plotted_rows = time.perf_counter(), len(history)
            say(
                f"epoch {epoch_number}: train loss {train_terms['train_loss']:.4g}, val loss {val['val_loss']:.4g}, "
                f"SNR {val['val_snr']:.2f} dB, LSD {val['val_lsd']:.3f}, LSD-HF {val['val_lsd_hf']:.3f}" + (" (best)" if improved else "")
            )

        # --- stop? (rank 0 decides for everyone) ---
        if step >= max_steps:
            stopped = "max_steps" if t.max_steps is not None and step < t.epochs * steps_per_epoch else "done"
        elif t.patience is not None and master and best_epoch is not None:
            since_best = len(history) - 1 - max(i for i, r in enumerate(history) if r["best"])
            stopped = "early_stop" if since_best >= t.patience else stopped
        if stopped == "done" and t.max_minutes is not None and time.perf_counter() - t0 > 60 * t.max_minutes:
            stopped = "time_limit"
        stopped = _broadcast(stopped)
        if stopped != "done" or step >= max_steps:
            break

    if master and plotted_rows < len(history):
        with writing(run_dir / "curves.png"):
            plot_history(run_dir, history)
    summary = TrainSummary(run_dir, epoch + epoch_batches / steps_per_epoch, step, best_epoch, best_val_loss, val, stopped, time.perf_counter() - t0)
    say(summary.line())
    return summary
