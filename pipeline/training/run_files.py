"""The files of a run folder: ``best.pt`` and ``last.pt`` (:func:`save_checkpoints`), ``history.csv``
and ``curves.png`` (:class:`Curves`); a write that fails is a one-line :class:`~.errors.TrainingError`.
One run at a time holds the folder (:func:`hold_run_folder`)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

import pandas as pd

from audio_superres.models.checkpoint import TrainingCheckpoint, save_checkpoint
from audio_superres.preprocessing.audio import atomic_path, atomic_write_text

from .errors import TrainingError
from .processes import Processes, broadcast


def nothing_to_resume(run_dir: Path) -> TrainingError:
    return TrainingError(f"{run_dir / 'last.pt'}: nothing to resume (no last.pt); run without --resume to start")


@contextlib.contextmanager
def hold_run_folder(run_dir: Path, procs: Processes, resume: bool):
    """Hold an exclusive lock (``flock`` on the folder itself: nothing is left in it) on ``run_dir``
    for the whole run, made first unless ``resume``; a second run on it, fresh or ``--resume``, is
    refused at once. Rank 0 holds it for every process. The lock goes when this block ends, however
    it ends, and with its process (a ``kill -9`` leaves nothing stale)."""
    problem, handle, made = None, None, False
    if procs.master:
        try:
            if not resume and not run_dir.exists():
                run_dir.mkdir(parents=True)
                made = True
            handle = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            problem = f"{run_dir}: another `pipeline train` run holds this run folder; wait for it to end, or set training.run_dir to another folder"
        except FileNotFoundError:
            problem = str(nothing_to_resume(run_dir)) if resume else f"{run_dir}: cannot make this run folder"
        except OSError as e:
            problem = f"{run_dir}: cannot use this run folder ({e.strerror or e})"
    problem = broadcast(problem)  # every process stops, or none
    try:
        if problem:
            raise TrainingError(problem)
        yield
    finally:
        if handle is not None:
            os.close(handle)
        if made:  # a run that stopped before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


def save_checkpoints(run_dir: Path, checkpoint: TrainingCheckpoint, best: bool) -> None:
    """``last.pt``, and ``best.pt`` too when ``best``."""
    with writing(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    contents = checkpoint.to_dict()
    # best before last: a run killed between the two resumes from the previous last.pt and
    # writes this best.pt again, where the other order would leave last.pt naming a best
    # epoch that best.pt does not hold
    if best:
        save_checkpoint(run_dir / "best.pt", contents)
    save_checkpoint(run_dir / "last.pt", contents)


def write_history(run_dir: Path, history: list[dict]) -> None:
    with writing(run_dir / "history.csv"):
        atomic_write_text(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))


class Curves:
    """``curves.png``, redrawn at most every ``every_s`` seconds (a plot costs about a second) and at the end."""

    def __init__(self, run_dir: Path, every_s: float, rows_drawn: int):
        self.run_dir, self.every_s, self.rows_drawn, self.drawn_at = run_dir, every_s, rows_drawn, time.perf_counter()

    def update(self, history: list[dict], final: bool = False) -> None:
        due = self.rows_drawn < len(history) if final else time.perf_counter() - self.drawn_at > self.every_s
        if due:
            with writing(self.run_dir / "curves.png"):
                plot_history(self.run_dir, history)
            self.rows_drawn, self.drawn_at = len(history), time.perf_counter()


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
