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

Nothing read is trusted: every field carries a check (its ``check`` metadata) that
:func:`read_checkpoint` (the fields every checkpoint has) and :meth:`TrainingCheckpoint.from_dict`
(all of them) apply, so that a damaged file is one line (``PATH: checkpoint field X is damaged
(...)``), never a traceback; weights that are not finite or absurdly large are refused
(:func:`check_weights`); a file that is not a checkpoint says what it is instead (a Python pickle,
which could run code, is refused for safety, unread).
"""

from __future__ import annotations

import io
import pickletools
import warnings
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import torch
from pydantic import ValidationError
from torch import nn

from audio_superres.preprocessing.audio import atomic_path, remove_stale_temporaries
from audio_superres.settings import BweSettings, ModelSettings

from .checkpoint_fields import (  # noqa: F401  (rng_state and kin: the training loop reads them from here)
    MAX_ABS_WEIGHT,
    _count,
    _count_or_none,
    _data,
    _mapping,
    _number,
    _optimizer,
    _rng_states,
    _rows,
    _scores,
    _shown,
    _tallies,
    _text,
    _weights,
    _weights_or_none,
    rng_state,
    rng_state_problem,
    set_rng_state,
)

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


# --- the checks of the fields: each returns what is wrong with a value, or None ---------------


def _check(check, every: bool = False, state: bool = False) -> dict:
    """A field's metadata: its check; ``every``: in every checkpoint, the model is rebuilt from these
    alone (REQUIRED_KEYS); ``state``: weights or optimisation state, left out of checkpoint_info."""
    return {"check": check, "in_every_checkpoint": every, "weights_or_optimisation": state}


@dataclass(kw_only=True)
class TrainingCheckpoint:
    """What ``pipeline train`` writes to ``last.pt`` and ``best.pt``: each field is a key of the file
    (in this order, after the ``format`` and ``version`` that :func:`save_checkpoint` adds),
    ``train_state`` only when it is set. Train writes ``to_dict()``; ``--resume`` reads
    ``from_dict(read_checkpoint(path), path)``."""

    family: str = field(metadata=_check(_text, every=True))
    model: dict = field(metadata=_check(_mapping, every=True))  # ModelSettings as a dict
    data: CheckpointData = field(metadata=_check(_data, every=True))
    training: dict = field(metadata=_check(_mapping))  # TrainingSettings as a dict
    model_state: dict = field(metadata=_check(_weights, every=True, state=True))  # the weights validated and used: with ema_decay, the moving average
    train_state: dict | None = field(default=None, metadata=_check(_weights_or_none, state=True))  # with ema_decay, the trained weights (what resuming needs)
    epoch: int = field(metadata=_check(_count))  # 1-based number of the epoch last trained, as in history.csv
    epochs_done: int = field(metadata=_check(_count))  # whole epochs done
    epoch_batches: int = field(metadata=_check(_count))  # batches done in a partial epoch
    step: int = field(metadata=_check(_count))
    best_val_loss: float = field(metadata=_check(_number))  # inf before the first validation
    best_epoch: int | None = field(metadata=_check(_count_or_none))
    val: dict = field(metadata=_check(_scores))  # the scores of the validation at this point
    history: list[dict] = field(metadata=_check(_rows))  # one dict per validation
    optimizer: dict = field(metadata=_check(_optimizer, state=True))
    scheduler: dict = field(metadata=_check(_mapping, state=True))
    rng: list[dict] = field(metadata=_check(_rng_states, state=True))  # one rng_state() per process
    # one dict per process: the loss sums and counts since the last validation (what the next row of
    # history.csv averages, so that a run resumed between validations writes the same row) and the
    # run of non-finite batches; absent (None) in checkpoints written before it
    tally: list[dict] | None = field(default=None, metadata=_check(_tallies, state=True))

    def to_dict(self) -> dict:
        """The fields, less those that are optional and unset."""
        return {f.name: getattr(self, f.name) for f in fields(self) if not (f.default is None and getattr(self, f.name) is None)}

    @classmethod
    def from_dict(cls, checkpoint: dict, path: str | Path = "checkpoint") -> TrainingCheckpoint:
        """The fields of ``checkpoint`` (a dict from :func:`read_checkpoint`), each checked;
        :class:`CheckpointError` when it lacks one (as a checkpoint stripped of its optimisation
        state does) or one is damaged."""
        missing = [f.name for f in fields(cls) if f.name not in checkpoint and f.default is MISSING]
        if missing:
            raise CheckpointError(f"{path}: not a checkpoint a run can resume from: it lacks {', '.join(missing)}")
        check_fields(checkpoint, path, [f.name for f in fields(cls)])
        return cls(**{f.name: checkpoint[f.name] for f in fields(cls) if f.name in checkpoint})


REQUIRED_KEYS = ("format", "version", *(f.name for f in fields(TrainingCheckpoint) if f.metadata.get("in_every_checkpoint")))
DATA_KEYS = tuple(CheckpointData.__annotations__)
_TRAINING_STATE_KEYS = tuple(f.name for f in fields(TrainingCheckpoint) if f.metadata.get("weights_or_optimisation"))
_CHECKS = {f.name: f.metadata["check"] for f in fields(TrainingCheckpoint)}


def damaged(path: str | Path, name: str, problem: str) -> CheckpointError:
    """The one-line error for a field of checkpoint ``path`` that cannot be used."""
    return CheckpointError(f"{path}: checkpoint field {name} is damaged ({problem})")


def check_fields(checkpoint: dict, path: str | Path, names) -> None:
    """Apply the checks of the fields ``names`` that ``checkpoint`` holds; :class:`CheckpointError` for the first damaged one."""
    for name in names:
        if name in checkpoint:
            problem = _CHECKS[name](checkpoint[name])
            if problem:
                raise damaged(path, name, problem)


def check_weights(state: dict, path: str | Path, name: str = "model_state") -> None:
    """Refuse weights (checkpoint field ``name``) that hold NaN or infinite values, or values beyond
    ``MAX_ABS_WEIGHT``: such a model (a run that diverged, a damaged file) would only output silence or noise."""
    for key, tensor in state.items():
        if not (tensor.is_floating_point() or tensor.is_complex()) or tensor.numel() == 0:
            continue
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise damaged(path, name, f"{key} holds {bad} NaN or infinite value(s) of {tensor.numel()}; refused")
        largest = float(tensor.detach().abs().max())
        if largest > MAX_ABS_WEIGHT:
            raise damaged(path, name, f"{key} holds a value of magnitude {largest:.3g}, beyond {MAX_ABS_WEIGHT:.0e}; refused")


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
    """The checkpoint dict at ``path``, loaded without unpickling code (``weights_only=True``), the
    fields every checkpoint has checked. Raises :class:`CheckpointError` for a missing file, a file
    that is not a checkpoint (saying what it is), one holding arbitrary Python objects, or a damaged field."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file (training writes best.pt and last.pt inside its run folder)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about the pickle protocol of foreign files
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read: {e.strerror or e}") from None
    except Exception as e:  # noqa: BLE001  (garbage makes the unpickler fail in many ways: UnpicklingError, EOFError, KeyError, RuntimeError...)
        raise CheckpointError(f"{path}: {_not_loadable(path, e)}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a checkpoint written by `pipeline train` (no {FORMAT!r} format tag)")
    if checkpoint.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {checkpoint.get('version')} is not supported (this code reads version {VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in checkpoint]
    if not missing and isinstance(checkpoint["data"], dict):
        missing = [f"data.{k}" for k in DATA_KEYS if k not in checkpoint["data"]]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {', '.join(missing)}")
    check_fields(checkpoint, path, REQUIRED_KEYS[2:])
    return checkpoint


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the number torch's older format pickles first
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"}  # imports and calls
_SNIFF_BYTES = 1 << 26


def _not_loadable(path: Path, error: Exception) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed with ``error``, as the file's kind shows it."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    kind = "torch" if head.startswith(_ZIP_MAGIC) else _pickle_kind(head)
    if kind == "torch":
        # torch's words vary ("Unsupported global: GLOBAL print ...", "unsupported GLOBAL posix.system whose module
        # posix is blocked" in 2.13): either way the file imports something that is not a tensor or a plain value
        if "unsupported global" in str(error).lower():
            return "not a valid checkpoint: it holds Python objects other than tensors and plain values, refused for safety (weights_only)"
        return f"not a valid checkpoint: unreadable as a PyTorch file ({type(error).__name__}{': ' + first if first else ''})"
    if kind == "code":
        return "not a checkpoint file: a Python pickle that would import and call code when loaded (arbitrary code), refused for safety"
    if kind == "plain":
        return "not a checkpoint file: a plain Python pickle, not PyTorch's format"
    return "not a checkpoint file (empty)" if not head else "not a checkpoint file (unrecognised format)"


def _pickle_kind(head: bytes) -> str | None:
    """What the first pickle in ``head`` is, read with :mod:`pickletools` (which runs nothing):
    ``torch`` (the number that opens torch's older format), ``code`` (it imports or calls
    something), ``plain``, or None when ``head`` does not start with a pickle."""
    names, args = [], []
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(head)):
            names.append(opcode.name)
            args.append(arg)
    except Exception:  # noqa: BLE001  (not a pickle, or one cut short by _SNIFF_BYTES)
        if len(head) < _SNIFF_BYTES or len(names) < 2:
            return None
    if len(names) < 2:  # a lone STOP: one byte of chance, not a pickle
        return None
    if _TORCH_LEGACY_MAGIC in args and not _CODE_OPCODES & set(names):
        return "torch"
    return "code" if _CODE_OPCODES & set(names) else "plain"


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
    """The network described by ``checkpoint`` with its weights loaded (left in train mode);
    :class:`CheckpointError` when they do not fit it, or are not finite (:func:`check_weights`)."""
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
    check_weights(checkpoint["model_state"], path)
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
