"""What each field of a checkpoint may hold: one check per field, returning the problem in words
or ``None`` (``models/checkpoint.py`` declares which check guards which key), and the RNG states
that a checkpoint carries per process."""

from __future__ import annotations

import math
import random
import reprlib

import numpy as np
import torch

MAX_ABS_WEIGHT = 1e6  # trained weights and buffers are far below this; beyond it a file is damaged or diverged
HISTORY_KEYS = ("step", "train_loss", "val_loss", "val_snr", "val_lsd", "val_lsd_hf", "best")  # what the run reads back from a row
SCORE_KEYS = ("val_loss", "val_snr", "val_lsd", "val_lsd_hf")


def _shown(value) -> str:
    """A value as a message shows it: its type and a short repr."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__} {reprlib.repr(value)}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _count(value) -> str | None:
    return None if _is_int(value) and value >= 0 else f"{_shown(value)}, not a whole number >= 0"


def _count_or_none(value) -> str | None:
    return None if value is None else _count(value)


def _number(value) -> str | None:
    return None if _is_number(value) and not math.isnan(value) else f"{_shown(value)}, not a number"


def _text(value) -> str | None:
    return None if isinstance(value, str) and value else f"{_shown(value)}, not a name"


def _mapping(value) -> str | None:
    return None if isinstance(value, dict) else f"{_shown(value)}, not a dict"


def _data(value) -> str | None:
    """``data``: its keys are checked first by :func:`read_checkpoint` ('checkpoint lacks data.X')."""
    if not isinstance(value, dict):
        return _mapping(value)
    for key in ("sample_rate", "factor", "low_rate"):
        if key in value and not (_is_int(value[key]) and value[key] > 0):
            return f"{key} is {_shown(value[key])}, not a whole number > 0"
    lowres = value.get("lowres", [])
    if not (isinstance(lowres, list) and all(isinstance(m, str) for m in lowres)):
        return f"lowres is {_shown(lowres)}, not a list of method names"
    return None


def _weights(value) -> str | None:
    if not isinstance(value, dict) or not value:
        return f"{_shown(value)}, not a dict of tensors"
    wrong = next((k for k, v in value.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))), None)
    return None if wrong is None else f"{wrong!r} is {_shown(value[wrong])}, not a tensor"


def _weights_or_none(value) -> str | None:
    return None if value is None else _weights(value)


def _scores(value) -> str | None:
    """``val``: empty before the first validation, else its scores."""
    if not isinstance(value, dict):
        return _mapping(value)
    if value:
        for key in SCORE_KEYS:
            if not _is_number(value.get(key)):
                return f"{key} is {_shown(value.get(key))}, not a number"
    return None


def _rows(value) -> str | None:
    """``history``: one dict per validation, with the columns the run reads back (plots, early stop)."""
    if not isinstance(value, list):
        return f"{_shown(value)}, not a list of rows"
    for i, row in enumerate(value):
        if not isinstance(row, dict):
            return f"row {i} is {_shown(row)}, not a dict"
        for key in HISTORY_KEYS:
            if key not in row:
                return f"row {i} lacks {key}"
            if not (_is_number(row[key]) or (key == "best" and isinstance(row[key], bool))):
                return f"row {i}: {key} is {_shown(row[key])}"
    return None


def _optimizer(value) -> str | None:
    """``optimizer``: the shape of an ``Optimizer.state_dict()``; its fit to the run's optimiser is
    checked on resume (``pipeline/training/progress.py``)."""
    if not isinstance(value, dict):
        return _mapping(value)
    for key in ("state", "param_groups"):
        if key not in value:
            return f"it lacks {key}"
    if not isinstance(value["state"], dict) or not all(isinstance(v, dict) for v in value["state"].values()):
        return f"state is {_shown(value['state'])}, not a dict of per-parameter dicts"
    groups = value["param_groups"]
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        return f"param_groups is {_shown(groups)}, not a list of dicts"
    for i, group in enumerate(groups):
        params = group.get("params")
        if not (isinstance(params, list) and all(_is_int(p) for p in params)):
            return f"param_groups[{i}].params is {_shown(params)}, not a list of parameter numbers"
    return None


def _rng_states(value) -> str | None:
    """``rng``: one :func:`rng_state` per process."""
    if not isinstance(value, list) or not value:
        return f"{_shown(value)}, not a list of one RNG state per process"
    for i, state in enumerate(value):
        problem = rng_state_problem(state)
        if problem:
            return f"entry {i}: {problem}"
    return None


def _tallies(value) -> str | None:
    """``tally``: absent in checkpoints written before it, else one per process."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        return f"{_shown(value)}, not a list of one tally per process"
    for i, tally in enumerate(value):
        if not isinstance(tally, dict):
            return f"entry {i} is {_shown(tally)}, not a dict"
        for key, check in (("sums", _mapping), ("batches", _count), ("skipped", _count), ("bad_in_a_row", _count), ("seconds", _number)):
            problem = check(tally.get(key)) if key in tally else "missing"
            if problem:
                return f"entry {i}: {key}: {problem}"
        wrong = next((k for k, v in tally["sums"].items() if not (isinstance(k, str) and _is_number(v))), None)
        if wrong is not None:
            return f"entry {i}: sums[{wrong!r}] is {_shown(tally['sums'][wrong])}, not a number"
    return None


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


def rng_state_problem(state) -> str | None:
    """What makes ``state`` something other than an :func:`rng_state` that :func:`set_rng_state` can restore (None: nothing)."""
    if not isinstance(state, dict) or set(state) != {"torch", "cuda", "numpy", "python"}:
        return f"{_shown(state)}, not a dict of torch, cuda, numpy and python states"
    t = state["torch"]
    if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.shape == torch.get_rng_state().shape):
        return f"torch is {_shown(t)}, not a uint8 tensor of shape {tuple(torch.get_rng_state().shape)}"
    if not (isinstance(state["cuda"], list) and all(isinstance(c, torch.Tensor) and c.dtype == torch.uint8 for c in state["cuda"])):
        return f"cuda is {_shown(state['cuda'])}, not a list of uint8 tensors"
    n, p = state["numpy"], state["python"]
    if not (isinstance(n, dict) and set(n) == {"keys", "pos", "has_gauss", "cached_gaussian"}):
        return f"numpy is {_shown(n)}, not a dict of keys, pos, has_gauss and cached_gaussian"
    keys = n["keys"]
    if not (isinstance(keys, torch.Tensor) and not keys.is_floating_point() and keys.shape == (624,) and bool(((keys >= 0) & (keys < 2**32)).all())):
        return f"numpy.keys is {_shown(keys)}, not 624 whole numbers of 32 bits"
    if not (_is_int(n["pos"]) and 0 <= n["pos"] <= 624 and _is_int(n["has_gauss"]) and _is_number(n["cached_gaussian"])):
        return f"numpy.pos, has_gauss or cached_gaussian is not a number in range ({n['pos']!r}, {n['has_gauss']!r}, {n['cached_gaussian']!r})"
    if not (isinstance(p, dict) and set(p) == {"version", "state", "gauss"}):
        return f"python is {_shown(p)}, not a dict of version, state and gauss"
    words = p["state"]
    if not (isinstance(words, torch.Tensor) and not words.is_floating_point() and words.shape == (625,) and bool(((words >= 0) & (words < 2**32)).all()) and int(words[-1]) <= 624):
        return f"python.state is {_shown(words)}, not 625 whole numbers of 32 bits"
    if not (_is_int(p["version"]) and (p["gauss"] is None or _is_number(p["gauss"]))):
        return f"python.version or gauss is not a number ({p['version']!r}, {p['gauss']!r})"
    return None
