"""Which torch device a command runs on: the one place that reads ``auto`` / ``cpu`` / ``cuda``."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """The device asked for is not here; the message is one line."""


def resolve_device(name: str, what: str = "--device", index: int | None = None) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is a
    :class:`DeviceError` naming ``what`` (the option or setting that asked). ``index`` picks a GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what} cuda: no CUDA GPU is available to torch here; use {what} cpu (or auto)")
        if index is not None and index >= torch.cuda.device_count():
            raise DeviceError(f"{what} cuda: GPU {index} asked for (LOCAL_RANK) but only {torch.cuda.device_count()} are here")
        return torch.device("cuda", index) if index is not None else torch.device("cuda")
    return torch.device(name)
