"""Checkpoints: one dict of plain values and tensors, loadable with ``torch.load(weights_only=True)``.

A checkpoint alone rebuilds its model: it holds the family name and model settings, and the data
settings that made the inputs the model learned from (``"data": {"sample_rate", "factor",
"low_rate", "lowres"}``, ``lowres`` being the list of low-res methods it was trained on). A training
checkpoint (``last.pt``, ``best.pt``) also holds what resuming needs: epoch and step, optimizer,
scheduler, every process's RNG states (as tensors) and the best validation score so far.

The keys are declared once, as the fields of :class:`TrainingCheckpoint` (plus ``format`` and
``version``, which :func:`save_checkpoint` adds); :data:`REQUIRED_KEYS`, :data:`DATA_KEYS` and the
keys :func:`checkpoint_info` leaves out derive from it. A checkpoint stripped of its optimisation
state (``benchmarks/export_weights.py``, ``models/pretrained/*.pt``) still loads as a model.
"""

from __future__ import annotations

import pickle
import random
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from audio_superres.settings import BweSettings, ModelSettings
from audio_superres.preprocessing.audio import atomic_path, remove_stale_temporaries

FORMAT = "audio-superres-checkpoint"
VERSION = 1


class CheckpointError(Exception):
    """A file that is not a usable checkpoint; the message is one line naming the file."""


class CheckpointData(TypedDict):
    """How the inputs the model learned from were made."""

    sample_rate: int
    factor: int
    low_rate: int
    lowres: list[str]  # the low-res methods it was trained on


_EVERY = {"in_every_checkpoint": True}  # the model is rebuilt from these alone (REQUIRED_KEYS)
_STATE = {"weights_or_optimisation": True}  # left out of checkpoint_info


@dataclass(kw_only=True)
class TrainingCheckpoint:
    """What ``pipeline train`` writes to ``last.pt`` and ``best.pt``: each field is a key of the file
    (in this order, after the ``format`` and ``version`` that :func:`save_checkpoint` adds),
    ``train_state`` only when it is set. Train writes ``to_dict()``; ``--resume`` reads
    ``from_dict(read_checkpoint(path), path)``."""

    family: str = field(metadata=_EVERY)
    model: dict = field(metadata=_EVERY)  # ModelSettings as a dict
    data: CheckpointData = field(metadata=_EVERY)
    training: dict  # TrainingSettings as a dict
    model_state: dict = field(metadata=_EVERY | _STATE)  # the weights validated and used: with ema_decay, the moving average
    train_state: dict | None = field(default=None, metadata=_STATE)  # with ema_decay, the trained weights (what resuming needs)
    epoch: int  # 1-based number of the epoch last trained, as in history.csv
    epochs_done: int  # whole epochs done
    epoch_batches: int  # batches done in a partial epoch
    step: int
    best_val_loss: float
    best_epoch: int | None
    val: dict  # the scores of the validation at this point
    history: list[dict]  # one dict per validation
    optimizer: dict = field(metadata=_STATE)
    scheduler: dict = field(metadata=_STATE)
    rng: list[dict] = field(metadata=_STATE)  # one rng_state() per process

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if not (f.name == "train_state" and self.train_state is None)}

    @classmethod
    def from_dict(cls, checkpoint: dict, path: str | Path = "checkpoint") -> TrainingCheckpoint:
        """The fields of ``checkpoint`` (a dict from :func:`read_checkpoint`); :class:`CheckpointError`
        when it lacks one, as a checkpoint stripped of its optimisation state does."""
        missing = [f.name for f in fields(cls) if f.name not in checkpoint and f.default is MISSING]
        if missing:
            raise CheckpointError(f"{path}: not a checkpoint a run can resume from: it lacks {', '.join(missing)}")
        return cls(**{f.name: checkpoint[f.name] for f in fields(cls) if f.name in checkpoint})


REQUIRED_KEYS = ("format", "version", *(f.name for f in fields(TrainingCheckpoint) if f.metadata.get("in_every_checkpoint")))
DATA_KEYS = tuple(CheckpointData.__annotations__)
_TRAINING_STATE_KEYS = tuple(f.name for f in fields(TrainingCheckpoint) if f.metadata.get("weights_or_optimisation"))


def rng_state() -> dict:
    """This process's torch, CUDA (current device), numpy and Python RNG states, as tensors and numbers."""
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # this process's device only: asking for every device's state would open a CUDA context on
        # each GPU from each DDP process; and none at all when CUDA is not in use
        "cuda": [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(state["cuda"][0].cpu())
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))


def _on_cpu(value):
    """``value`` with every tensor inside it (dicts, lists, tuples) on the CPU: a checkpoint written by a
    GPU run then loads with a plain ``torch.load`` on a machine without one (optimiser state is moved
    back to the parameters' device by ``Optimizer.load_state_dict``)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def save_checkpoint(path: str | Path, checkpoint: dict) -> None:
    """Write ``checkpoint`` to ``path`` under a temporary name renamed into place, so that a kill
    mid-write leaves the previous file intact; :class:`CheckpointError` when it cannot be written."""
    checkpoint = {"format": FORMAT, "version": VERSION, **_on_cpu(checkpoint)}
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks {', '.join(missing)}")
    remove_stale_temporaries(Path(path).parent, {Path(path).name})  # a half-written one from a killed run
    try:
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)
    except OSError as e:  # a full disk, a read-only folder: the previous file stays as it was
        raise CheckpointError(f"{path}: cannot write: {e.strerror or e}") from None


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict at ``path``, loaded without unpickling code (``weights_only=True``).
    Raises :class:`CheckpointError` for a missing file, a file that is not a checkpoint, or one
    holding arbitrary Python objects."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (training writes best.pt and last.pt inside its run folder)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of foreign files
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):
            problem = "it holds Python objects other than tensors and plain values, refused for safety (weights_only)"
        else:
            problem = "not a PyTorch file of tensors and plain values"
        raise CheckpointError(f"{path}: not a valid checkpoint: {problem}") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001  (garbage makes the unpickler fail in many ways: EOFError, KeyError, RuntimeError...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"{path}: not a valid checkpoint: unreadable as a PyTorch file ({type(e).__name__}{': ' + first if first else ''})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by `pipeline train` (no {FORMAT!r} format tag)")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {checkpoint.get('version')} is not supported (this code reads version {VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint] + [f"data.{k}" for k in DATA_KEYS if k not in checkpoint.get("data", {})]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return checkpoint


def checkpoint_info(checkpoint: dict) -> dict:
    """Everything but the weights and the optimisation state: family, settings, data, scores."""
    return {k: v for k, v in checkpoint.items() if k not in _TRAINING_STATE_KEYS}


_BWE_KEYS = tuple(BweSettings.model_fields)


def model_settings_of(checkpoint: dict) -> dict:
    """The checkpoint's model settings as this code's :class:`ModelSettings` reads them: checkpoints
    written before the bwe fields moved to ``model.bwe`` held them at the top level."""
    stored = dict(checkpoint["model"])
    moved = {k: stored.pop(k) for k in _BWE_KEYS if k in stored}
    if moved:
        stored["bwe"] = {**stored.get("bwe", {}), **moved}
    return stored


def build_from_checkpoint(checkpoint: dict, path: str | Path = "checkpoint") -> nn.Module:
    """The network described by ``checkpoint`` with its weights loaded (left in train mode)."""
    from .registry import build_model

    try:
        settings = ModelSettings.model_validate(model_settings_of(checkpoint))
    except ValidationError as e:
        first = e.errors()[0]
        raise CheckpointError(f"{path}: model settings in the checkpoint are not valid here: model.{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    if settings.name != checkpoint["family"]:
        raise CheckpointError(f"{path}: family {checkpoint['family']!r} disagrees with model.name {settings.name!r}")
    try:
        model = build_model(settings, int(checkpoint["data"]["factor"]))
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:
        model.load_state_dict(checkpoint["model_state"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit a {settings.name} model with these settings: {str(e).strip().splitlines()[0]}") from None
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """``(model, info)``: the network of checkpoint ``path`` on ``device`` in eval mode, and its
    info dict (``"data": {"sample_rate", "factor", "low_rate", "lowres"}``, ``"model"``: model
    settings, ``"family"``, and for training checkpoints ``"epoch"``, ``"step"``, ``"val"``, ...)."""
    checkpoint = read_checkpoint(path, map_location="cpu")
    model = build_from_checkpoint(checkpoint, path).to(device)
    model.eval()
    return model, checkpoint_info(checkpoint)
