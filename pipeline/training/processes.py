"""The processes of a run: one, or one per GPU under ``torchrun`` (DistributedDataParallel).

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them the run is one process.
On CPU the processes talk through gloo, on CUDA through NCCL. :func:`gather` and :func:`broadcast`
are the two exchanges besides the gradients' all-reduce: every process must call them.
:class:`Interrupts` makes Ctrl-C wait for the end of a batch, so that the state it stops at can be saved.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import threading
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from audio_superres.models.device import DeviceError, resolve_device

from .errors import TrainingError


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


def gather(obj):
    """``[obj of rank 0, obj of rank 1, ...]`` (all processes must call it)."""
    if not dist.is_initialized():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every process (all processes must call it)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class Interrupts:
    """Ctrl-C (SIGINT) during a run. Inside :meth:`held` it waits for the block to end and is raised
    there as ``KeyboardInterrupt``, so that the run is never stopped half way through updating its
    weights, optimiser and counters; elsewhere, and a second Ctrl-C, are raised at once. ``with
    Interrupts() as interrupts:`` installs it for the run, only in the main thread and only where
    Ctrl-C would raise ``KeyboardInterrupt`` anyway (not where SIGINT is ignored or handled)."""

    def __init__(self):
        self.holding, self.pending, self.previous = False, False, None

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        self.previous, self.holding, self.pending = None, False, False

    def _on_sigint(self, signum, frame) -> None:
        if self.holding and not self.pending:
            self.pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
