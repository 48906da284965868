"""Model families by name (``model.name``), so that a checkpoint can rebuild its network from the
settings it stores.

Every family is an ``nn.Module`` built as ``cls(model_settings, factor)`` whose ``forward`` takes the
low-res clip ``(batch, 1, n)`` at the low rate, any ``n``, and returns ``(batch, 1, n * factor)`` at
the high rate, sample-aligned with it (low-res sample ``k`` sits at high-res sample ``k * factor``).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from pipeline.settings import ModelSettings

MODEL_FAMILIES: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        MODEL_FAMILIES[name] = cls
        return cls

    return deco


def build_model(settings: ModelSettings, factor: int) -> nn.Module:
    """The network named by ``settings.name``, for a rate ratio of ``factor``."""
    from . import families  # noqa: F401  (imports every family module, which registers itself)

    if settings.name not in MODEL_FAMILIES:
        raise ValueError(f"model.name {settings.name!r} is not a model family; choose one of {', '.join(sorted(MODEL_FAMILIES))}")
    return MODEL_FAMILIES[settings.name](settings, factor)
