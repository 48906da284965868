"""Settings: the schema (:mod:`.schema`, a leaf importing nothing of ours) and how the files and
``--set`` overrides are read (:mod:`.loading`). The JSON files beside this module are the defaults."""

from .loading import SettingsError, load_settings, parse_override, write_default_settings
from .schema import (
    LOWRES_METHODS,
    MODEL_NAMES,
    SETTINGS_MODELS,
    AugmentSettings,
    BweSettings,
    DataSettings,
    LowresMethod,
    ModelName,
    ModelSettings,
    Settings,
    Splits,
    TrainingSettings,
    UNetSettings,
    UpsamplingSettings,
)

__all__ = [
    "LOWRES_METHODS",
    "MODEL_NAMES",
    "SETTINGS_MODELS",
    "AugmentSettings",
    "BweSettings",
    "DataSettings",
    "LowresMethod",
    "ModelName",
    "ModelSettings",
    "Settings",
    "SettingsError",
    "Splits",
    "TrainingSettings",
    "UNetSettings",
    "UpsamplingSettings",
    "load_settings",
    "parse_override",
    "write_default_settings",
]
