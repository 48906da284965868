"""The lines ``pipeline train`` says: the run's opening line, one per validation, and where
``--resume`` goes on after Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audio_superres.models.checkpoint import CheckpointError, read_checkpoint

from .progress import Progress

if TYPE_CHECKING:  # the run's records, for the annotations only (train imports this module)
    from .loaders import Clips, Loaders
    from .model import Networks


def describe(run, nets: Networks, clips: Clips, loaders: Loaders) -> str:
    """The line that opens a run: model, device, processes, data."""
    n_params = sum(p.numel() for p in nets.raw.parameters())
    how = f"low-res made on the fly ({', '.join(clips.data['lowres'])})" if clips.on_the_fly else f"stored low-res ({clips.stored_lowres})"
    return (
        f"train: {run.settings.model.name} ({n_params / 1e6:.2f} M parameters) on {run.procs.device}"
        + (f" x {run.procs.world} processes" if run.procs.world > 1 else "")
        + f"; {len(loaders.train_set)} train / {len(clips.val_rows)} val clips, {how}{', cached' if loaders.cached else ''}; {loaders.steps_per_epoch} steps per epoch"
    )


def epoch_line(progress: Progress, improved: bool) -> str:
    row = progress.history[-1]
    return (
        f"epoch {row['epoch']}: train loss {row['train_loss']:.4g}, val loss {row['val_loss']:.4g}, "
        f"SNR {row['val_snr']:.2f} dB, LSD {row['val_lsd']:.3f}, LSD-HF {row['val_lsd_hf']:.3f}" + (" (best)" if improved else "")
    )


def interrupted_line(run_dir: Path) -> str:
    """What ``pipeline train`` says when Ctrl-C stops it: where ``--resume`` goes on, as ``last.pt`` tells."""
    last = Path(run_dir) / "last.pt"
    if not last.is_file():
        return f"interrupted before the first checkpoint: {run_dir} holds no last.pt to resume; start the run again without --resume"
    try:
        checkpoint = read_checkpoint(last)
    except CheckpointError as e:
        return f"interrupted: {e}"
    where = f"epoch {checkpoint['epoch']}, step {checkpoint['step']}" if "step" in checkpoint else "its state"
    return f"interrupted: `pipeline train --resume` continues from {last} ({where})"
