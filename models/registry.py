"""Model families by name (``model.name``): each name maps, explicitly, to its network class and the
settings model whose fields are that class's keyword arguments. A checkpoint rebuilds its network
from the settings it stores.

Every network is an ``nn.Module`` built as ``cls(factor, **kwargs)``, knowing nothing of the settings
system; its ``forward`` takes the low-res clip ``(batch, 1, n)`` at the low rate, any ``n``, and
returns ``(batch, 1, n * factor)`` at the high rate, sample-aligned with it (low-res sample ``k`` sits
at high-res sample ``k * factor``).
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel
from torch import nn

from audio_superres.settings import MODEL_NAMES, BweSettings, ModelSettings, UNetSettings

from .audiounet import AudioUNet
from .bwe import BandwidthExtender
from .tfnet import TFNet


class Family(NamedTuple):
    network: type[nn.Module]
    settings: type[BaseModel]  # its fields are the network's keyword arguments


FAMILIES: dict[str, Family] = {"bwe": Family(BandwidthExtender, BweSettings), "audiounet": Family(AudioUNet, UNetSettings), "tfnet": Family(TFNet, UNetSettings)}
assert tuple(FAMILIES) == MODEL_NAMES, "settings.MODEL_NAMES and the registry must list the same families"


def family_kwargs(settings: ModelSettings) -> dict:
    """The keyword arguments of ``settings.name``'s network, from the settings that hold them."""
    fields = FAMILIES[settings.name].settings.model_fields
    source = settings.bwe if settings.name == "bwe" else settings
    return {k: getattr(source, k) for k in fields}


def build_model(settings: ModelSettings, factor: int) -> nn.Module:
    """The network named by ``settings.name``, for a rate ratio of ``factor``."""
    return FAMILIES[settings.name].network(factor, **family_kwargs(settings))
