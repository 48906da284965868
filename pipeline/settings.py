"""Settings: one pydantic model per JSON file in ``settings/``, every default in code.

The contract every stage follows:

* ``settings/data.json``, ``model.json``, ``training.json`` and ``upsampling.json`` each hold one
  flat-ish object validated by the model of the same name below (``extra="forbid"``: an unknown
  key is an error, not silently ignored). A missing file means "all defaults".
* ``--set FILE.KEY=VALUE`` overrides one key (dotted for nested keys, ``data.splits.train=0.5``).
  The value is parsed as JSON when it parses (numbers, ``true``, ``null``, lists) and taken as a
  plain string otherwise, then validated with the rest.
* Any problem is raised as :class:`SettingsError` whose message is one line naming the file, the
  field and the problem.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LowresMethod = Literal["soxr", "decimate", "subsample", "butterworth"]
LOWRES_METHODS: tuple[str, ...] = ("soxr", "decimate", "subsample", "butterworth")


class SettingsError(ValueError):
    """A settings file or override that cannot be used; the message is one line."""


class _Strict(BaseModel):
    # allow_inf_nan=False: JSON accepts NaN and Infinity, and an infinite clip_seconds or
    # chunk_seconds would pass ``gt=0`` and crash later when turned into a sample count
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Splits(_Strict):
    """Fractions of audio duration that go to each split; they must sum to 1."""

    train: float = Field(0.6, ge=0, le=1)
    val: float = Field(0.2, ge=0, le=1)
    test: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _sum_to_one(self) -> "Splits":
        total = self.train + self.val + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"fractions must sum to 1, got {self.train} + {self.val} + {self.test} = {total:g}")
        return self


def _whole(value: float, what: str) -> int:
    """``value`` as an int when it is a whole number (to 1e-6), else a ValueError naming ``what``."""
    rounded = round(value)
    if abs(value - rounded) > 1e-6:
        raise ValueError(f"{what} must be a whole number of samples, got {value:g}")
    return int(rounded)


class DataSettings(_Strict):
    """``data.json``: where talks are read from, how they are cut into clips, and how splits are made."""

    input_dir: Path = Path("data/talks")
    output_dir: Path = Path("data/clips")
    sample_rate: int = Field(16000, ge=1000, description="high-resolution rate (Hz)")
    factor: int = Field(4, ge=2, description="high rate / low rate")
    trim_seconds: float = Field(30.0, ge=0, description="cut from the start and from the end of each talk")
    clip_seconds: float = Field(2.0, gt=0)
    hop_seconds: float | None = Field(None, gt=0, description="clip start to clip start; null = clip_seconds")
    min_rms_db: float = Field(-50.0, description="clips quieter than this (dBFS RMS) are dropped")
    lowres: LowresMethod = "soxr"
    talk_from: Literal["file", "parent"] = "file"
    n_jobs: int = Field(-1, description="parallel workers; -1 = all cores")
    splits: Splits = Splits()
    split_by: Literal["talk", "clip"] = "talk"
    seed: int = 0
    audio_format: Literal["flac", "wav"] = "flac"

    @model_validator(mode="after")
    def _whole_samples(self) -> "DataSettings":
        if self.sample_rate % self.factor:
            raise ValueError(f"sample_rate {self.sample_rate} is not divisible by factor {self.factor}")
        low = self.sample_rate // self.factor
        _whole(self.clip_seconds * low, f"clip_seconds ({self.clip_seconds:g} s at the low rate {low} Hz)")
        _whole(self.hop * low, f"hop_seconds ({self.hop:g} s at the low rate {low} Hz)")
        return self

    @property
    def hop(self) -> float:
        return self.clip_seconds if self.hop_seconds is None else self.hop_seconds

    @property
    def low_rate(self) -> int:
        return self.sample_rate // self.factor

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop * self.sample_rate)

    @property
    def trim_samples(self) -> int:
        return round(self.trim_seconds * self.sample_rate)


class ModelSettings(_Strict):
    """``model.json``: which network and how big. ``width`` and ``depth`` are shared by every family."""

    name: str = "audiounet"
    width: int = Field(32, ge=1, description="channels of the first block; doubling per block, capped at 4x")
    depth: int = Field(4, ge=1, le=8)
    interpolation: Literal["cubic", "sinc"] = "cubic"
    dropout: float = Field(0.5, ge=0, lt=1)
    # the "bwe" family (models/bwe.py) only
    hidden: int = Field(192, ge=8, description="bwe: channels of the ConvNeXt trunk")
    blocks: int = Field(6, ge=1, le=32, description="bwe: ConvNeXt blocks")
    n_fft: int = Field(512, ge=16, description="bwe: STFT size at the high rate (a multiple of 2 * factor)")
    hop: int = Field(160, ge=1, description="bwe: STFT hop at the high rate (10 ms at 16 kHz)")
    keep_below: float = Field(0.75, ge=0, le=1, description="bwe: bins below this fraction of the low-res Nyquist pass through untouched")
    excitation: int = Field(3, ge=0, le=6, description="bwe: harmonic excitations x**2 .. x**(excitation+1); 0 = none")
    lsd_weight: float = Field(1.0, ge=0, description="bwe: weight of its log-spectral distance loss")
    snr_weight: float = Field(4.0, ge=0, description="bwe: weight of its SNR-below-sinc hinge loss")
    snr_margin_db: float = Field(1.0, description="bwe: the hinge asks for SNR at least sinc's plus this")
    phase_weight: float = Field(0.5, ge=0, description="bwe: weight of its anti-wrapping phase loss")


class TrainingSettings(_Strict):
    """``training.json``: the optimisation run."""

    run_dir: Path = Path("runs/default")
    epochs: int = Field(20, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(2, ge=0)
    seed: int = 0
    mse_weight: float = Field(1.0, ge=0)
    stft_weight: float = Field(0.0, ge=0)
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better val loss")
    lr_decay_steps: int | None = Field(None, ge=1, description="steps of the cosine decay; null = the run's length (epochs, capped by max_steps)")
    lowres_methods: list[LowresMethod] = Field(
        default_factory=list,
        description="low-res methods to train on, one drawn per example and made from the high-res clip; [] = the stored low-res files",
    )
    gain_db: tuple[float, float] = Field((0.0, 0.0), description="random gain range (dB) applied to each training pair; (0, 0) = none")
    speed: tuple[float, float] = Field(
        (1.0, 1.0),
        description="random speed range applied to each training clip before its input is made (as `sox speed`: pitch, formants and tempo "
        "scale together; a new voice from the same recording); (1, 1) = none. Needs lowres_methods and crop_seconds",
    )
    crop_seconds: float | None = Field(
        None, gt=0, description="train on a window of this length at a random offset in each clip (after the speed change); null = whole clips"
    )
    talk_sampling_power: float = Field(
        1.0, ge=0, le=1,
        description="draw training clips so that a talk's (speaker's) share is its duration to this power: 1 = every clip equally "
        "(a long talk as often as it is long), 0 = every talk equally, 0.5 between; an epoch keeps its number of clips",
    )
    ema_decay: float | None = Field(
        None, gt=0, lt=1,
        description="keep an exponential moving average of the weights (per step; 0.999 spans about the last 1000 steps): validation, "
        "best.pt and inference use the average; null = the weights as trained",
    )
    init_from: Path | None = Field(
        None,
        description="start from the weights of this checkpoint (fine-tuning; 'packaged' = the model that ships with the package): "
        "its family, architecture and rates must be this run's; the optimiser, schedule and step count start afresh",
    )
    cache_gb: float = Field(2.0, ge=0, description="keep decoded clips in memory when a split fits in this many GB; 0 = read from disk")
    max_minutes: float | None = Field(
        None, gt=0, description="stop after the first validation past this many minutes of this command (a time-boxed job; --resume goes on)"
    )

    @model_validator(mode="after")
    def _sane_training(self) -> "TrainingSettings":
        if self.gain_db[0] > self.gain_db[1]:
            raise ValueError(f"gain_db must be [low, high] with low <= high, got {list(self.gain_db)}")
        if len(set(self.lowres_methods)) != len(self.lowres_methods):
            raise ValueError(f"lowres_methods lists a method twice: {self.lowres_methods}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be [low, high] with 0 < low <= high, got {list(self.speed)}")
        if self.speed != (1.0, 1.0) and not (self.lowres_methods and self.crop_seconds):
            # the input must be made after the speed change, and a changed clip length must be cut
            # back to one length for a batch
            raise ValueError("speed needs lowres_methods (the input is made from the changed clip) and crop_seconds (one length per batch)")
        return self


class UpsamplingSettings(_Strict):
    """``upsampling.json``: applying a trained model to whole recordings."""

    checkpoint: Path | None = None
    chunk_seconds: float = Field(10.0, gt=0)
    overlap_seconds: float = Field(0.5, ge=0, description="cross-faded between neighbouring chunks")
    context_seconds: float = Field(0.25, ge=0, description="extra input each side of a chunk, seen by the model and discarded")
    batch_size: int | None = Field(None, ge=1, description="model rows per forward pass (chunks x channels); null: 8 on a CPU, 64 on a GPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool | Literal["auto"] = Field(
        "auto", description="run the model under bfloat16 autocast; auto: for models that keep their signal path in float32 (bwe)"
    )
    workers: int | None = Field(None, ge=1, description="files upsampled at once; null: 1 on a CPU (torch uses every core), 4 on a GPU")
    output_subtype: Literal["PCM_16", "PCM_24", "FLOAT"] = "PCM_16"

    @field_validator("overlap_seconds")
    @classmethod
    def _overlap_below_chunk(cls, v: float, info) -> float:
        chunk = info.data.get("chunk_seconds")
        if chunk is not None and v * 2 >= chunk:
            raise ValueError(f"overlap_seconds ({v:g}) must be under half of chunk_seconds ({chunk:g})")
        return v


SETTINGS_MODELS: dict[str, type[_Strict]] = {
    "data": DataSettings,
    "model": ModelSettings,
    "training": TrainingSettings,
    "upsampling": UpsamplingSettings,
}


class Settings(BaseModel):
    """All four settings files, as loaded for one command."""

    model_config = ConfigDict(extra="forbid")

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    upsampling: UpsamplingSettings = UpsamplingSettings()


def parse_override(text: str) -> tuple[str, list[str], object]:
    """``"data.splits.train=0.5"`` -> ``("data", ["splits", "train"], 0.5)``."""
    if "=" not in text:
        raise SettingsError(f"--set {text}: expected FILE.KEY=VALUE")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or parts[0] not in SETTINGS_MODELS or not all(parts):
        raise SettingsError(
            f"--set {text}: key must start with one of {', '.join(SETTINGS_MODELS)} and name a field, as data.factor=4"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return parts[0], parts[1:], value


def _read_json(path: Path) -> dict:
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SettingsError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"{path}: cannot read settings file: {e}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a JSON object, got {type(loaded).__name__}")
    return loaded


def _format_errors(origin: str, name: str, error: ValidationError, overridden: set[str]) -> str:
    problems = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        from_set = sorted(k for k in overridden if not field or k == field or k.startswith(field + ".") or field.startswith(k + "."))
        if field and from_set:
            where = f"--set {name}.{from_set[0]}"
        elif field:
            where = f"{origin}: {name}.{field}"
        else:
            where = f"{origin}: {name}" + (f" (with --set {', '.join(f'{name}.{k}' for k in from_set)})" if from_set else "")
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(f"{where}: {msg}")
    return "; ".join(problems)


def load_settings(settings_dir: str | Path | None = "settings", overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read ``settings_dir/{data,model,training,upsampling}.json`` (missing files: defaults), apply
    ``--set`` overrides and validate. Raises :class:`SettingsError` with a one-line message."""
    settings_dir = Path(settings_dir) if settings_dir is not None else None
    if settings_dir is not None and settings_dir.exists() and not settings_dir.is_dir():
        raise SettingsError(f"{settings_dir}: --settings must be a folder holding data.json, model.json, ...")
    raw: dict[str, dict] = {}
    origins: dict[str, str] = {}
    for name in SETTINGS_MODELS:
        path = settings_dir / f"{name}.json" if settings_dir is not None else None
        origins[name] = str(path) if path is not None else f"{name}.json (built-in defaults)"
        if path is not None and path.exists() and not path.is_file():
            raise SettingsError(f"{path}: not a file; a settings file must be a JSON file (or absent, for defaults)")
        raw[name] = _read_json(path) if path is not None and path.is_file() else {}

    overridden: dict[str, set[str]] = {name: set() for name in SETTINGS_MODELS}
    for text in overrides:
        name, keys, value = parse_override(text)
        node = raw[name]
        for k in keys[:-1]:
            child = node.get(k)
            if not isinstance(child, dict):
                child = {}
                node[k] = child
            node = child
        node[keys[-1]] = value
        overridden[name].add(".".join(keys))

    validated = {}
    for name, model in SETTINGS_MODELS.items():
        try:
            validated[name] = model.model_validate(raw[name])
        except ValidationError as e:
            raise SettingsError(_format_errors(origins[name], name, e, overridden[name])) from None
    return Settings(**validated)


def write_default_settings(settings_dir: str | Path) -> list[Path]:
    """Write every settings file with its defaults (how ``settings/*.json`` in the repo are made)."""
    settings_dir = Path(settings_dir)
    settings_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SETTINGS_MODELS.items():
        path = settings_dir / f"{name}.json"
        path.write_text(json.dumps(model().model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written
