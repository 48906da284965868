"""The lines ``pipeline train`` says: the run's opening line, one per validation, where
``--resume`` goes on after Ctrl-C, and the closing summary."""

from __future__ import annotations

from dataclasses import dataclass, field
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
    return f"epoch {row['epoch']}: train loss {row['train_loss']:.4g}, val loss {row['val_loss']:.4g}, SNR {row['val_snr']:.2f} dB, LSD {row['val_lsd']:.3f}, LSD-HF {row['val_lsd_hf']:.3f}" + (
        " (best)" if improved else ""
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


# TrainSummary.stopped -> what the summary line says about it
_STOPPED_BECAUSE = {"done": "", "max_steps": " (max_steps reached)", "early_stop": " (early stop: patience reached)"}
_STOPPED_BECAUSE |= {"already_done": " (already finished; nothing to do)", "time_limit": " (training.max_minutes reached; --resume goes on)"}


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
        why = _STOPPED_BECAUSE[self.stopped]
        return f"train: {self.steps} steps ({self.epochs:.3g} epochs) in {self.seconds:.1f} s{why}; {best}{last}; checkpoints in {self.run_dir}"
