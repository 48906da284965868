"""The settings schema: one pydantic model per JSON file in ``settings/``, every default in code.

This module is the leaf of the package: it imports nothing of ours, so every layer (audio I/O,
networks, stages, the CLI) may import it. ``settings/data.json``, ``model.json``, ``training.json``
and ``upsampling.json`` each hold one object validated by the model of the same name below
(``extra="forbid"``: an unknown key is an error, not silently ignored). Reading the files and
applying ``--set`` overrides is :mod:`.loading`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# How a low-res input is made from a high-res clip (preprocessing/lowres.py implements each): the
# one list that the settings, the library and the CLI's choices all read
LowresMethod = Literal["soxr", "decimate", "subsample", "butterworth"]
LOWRES_METHODS: tuple[str, ...] = get_args(LowresMethod)
# The network families (models/registry.py builds each); bwe is ours and the one that ships
ModelName = Literal["bwe", "audiounet", "tfnet"]
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)


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
    n_jobs: int = Field(-1, ge=-1, description="parallel workers; -1 = all cores (0 is not a count)")
    splits: Splits = Splits()
    split_by: Literal["talk", "clip"] = "talk"
    seed: int = 0
    audio_format: Literal["flac", "wav"] = "flac"
    min_bandwidth_hz: float | None = Field(None, ge=0, description="splice refuses a recording whose measured content ends below this (Hz); null: 0.85 of sample_rate / 2; 0: no check")
    backend: Literal["local", "dask"] = Field("local", description="where splice runs: local = this machine (n_jobs); dask = the workers of the Dask scheduler at dask_address")
    dask_address: str | None = Field(None, min_length=1, description="the Dask scheduler for backend=dask, tcp://HOST:PORT; every worker must see input_dir and output_dir at the same paths")

    @model_validator(mode="after")
    def _whole_samples(self) -> "DataSettings":
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be a number of workers (1 or more) or -1 for all cores, not 0")
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
    def min_band_hz(self) -> float:
        return 0.85 * self.sample_rate / 2 if self.min_bandwidth_hz is None else self.min_bandwidth_hz

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.sample_rate)

    @property
    def hop_samples(self) -> int:
        return round(self.hop * self.sample_rate)

    @property
    def trim_samples(self) -> int:
        return round(self.trim_seconds * self.sample_rate)


class UNetSettings(_Strict):
    """The research families' size (``audiounet``, ``tfnet``): the keyword arguments of their networks."""

    width: int = Field(32, ge=1, le=1024, description="channels of the first block; doubling per block, capped at 4x")
    depth: int = Field(4, ge=1, le=8)
    interpolation: Literal["cubic", "sinc"] = "cubic"
    dropout: float = Field(0.5, ge=0, lt=1)


class BweSettings(_Strict):
    """``model.bwe``: the keyword arguments of ours, :class:`models.bwe.BandwidthExtender`."""

    hidden: int = Field(192, ge=8, le=4096, description="channels of the ConvNeXt trunk")
    blocks: int = Field(6, ge=1, le=32, description="ConvNeXt blocks")
    n_fft: int = Field(512, ge=16, le=16384, description="STFT size at the high rate (a multiple of 2 * factor)")
    hop: int = Field(160, ge=1, description="STFT hop at the high rate (10 ms at 16 kHz); at most n_fft")
    keep_below: float = Field(0.75, ge=0, le=1, description="bins below this fraction of the low-res Nyquist pass through untouched")
    excitation: int = Field(3, ge=0, le=6, description="harmonic excitations x**2 .. x**(excitation+1); 0 = none")
    lsd_weight: float = Field(1.0, ge=0, description="weight of its log-spectral distance loss")
    snr_weight: float = Field(4.0, ge=0, description="weight of its SNR-below-sinc hinge loss")
    snr_margin_db: float = Field(1.0, ge=-60, le=60, description="the hinge asks for SNR at least sinc's plus this")
    phase_weight: float = Field(0.5, ge=0, description="weight of its anti-wrapping phase loss")
    overshoot_weight: float = Field(0.0, ge=0, description="weight of its loudness-overshoot loss (invented band louder than the truth's, per critical band and frame: what PESQ punishes)")
    overshoot_bands: int = Field(16, ge=1, le=64, description="critical bands of that loss over the bins the model writes")

    @model_validator(mode="after")
    def _hop_within_frame(self) -> "BweSettings":
        if self.hop > self.n_fft:
            raise ValueError(f"hop ({self.hop}) must be at most n_fft ({self.n_fft}): frames would skip samples")
        return self


class ModelSettings(UNetSettings):
    """``model.json``: which network and how big. ``width`` .. ``dropout`` size the research
    families; ``bwe`` holds ours."""

    name: ModelName = "bwe"
    bwe: BweSettings = BweSettings()


class AugmentSettings(_Strict):
    """``training.augment``: a random recording channel applied to each training target before its
    input is made (:mod:`preprocessing.augment`, where each is explained). ``p_*`` is how often each
    fires (0: never, the default); the ranges are drawn uniformly. The packaged recipe:
    ``p_tilt=0.3 p_eq=0.3 p_room=0.15 p_noise=0.3 p_level=0.5``."""

    p_tilt: float = Field(0.0, ge=0, le=1)
    tilt_db_per_octave: tuple[float, float] = (-2.0, 2.0)
    p_eq: float = Field(0.0, ge=0, le=1)
    eq_bands: tuple[int, int] = (1, 3)
    eq_freq_hz: tuple[float, float] = (100.0, 7000.0)
    eq_gain_db: tuple[float, float] = (-6.0, 6.0)
    eq_q: tuple[float, float] = (0.5, 2.0)
    p_room: float = Field(0.0, ge=0, le=1)
    rt60_s: tuple[float, float] = (0.1, 0.5)
    drr_db: tuple[float, float] = (5.0, 20.0)
    p_noise: float = Field(0.0, ge=0, le=1)
    noise_db: tuple[float, float] = (-70.0, -40.0)
    p_pink: float = Field(0.5, ge=0, le=1)
    p_level: float = Field(0.0, ge=0, le=1)
    level_db: tuple[float, float] = (-20.0, 0.0)

    @model_validator(mode="after")
    def _ranges(self) -> "AugmentSettings":
        for name, value in self:
            if isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(f"{name} must be [low, high] with low <= high, got {list(value)}")
        if self.eq_freq_hz[0] <= 0 or self.eq_q[0] <= 0 or self.rt60_s[0] <= 0 or self.eq_bands[0] < 1:
            raise ValueError("eq_freq_hz, eq_q and rt60_s must be positive and eq_bands at least 1")
        return self


class TrainingSettings(_Strict):
    """``training.json``: the optimisation run."""

    run_dir: Path = Path("runs/default")
    epochs: int = Field(20, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1, le=4096)
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
    lowres_methods: list[LowresMethod] = Field(default_factory=list, description="low-res methods to train on, one drawn per example and made from the high-res clip; [] = the stored low-res files")
    gain_db: tuple[float, float] = Field((0.0, 0.0), description="random gain range (dB) applied to each training pair; (0, 0) = none")
    speed: tuple[float, float] = Field(
        (1.0, 1.0),
        description="random speed range applied to each training clip before its input is made (as `sox speed`: pitch, formants and tempo "
        "scale together; a new voice from the same recording); (1, 1) = none. Needs lowres_methods and crop_seconds",
    )
    crop_seconds: float | None = Field(None, gt=0, description="train on a window of this length at a random offset in each clip (after the speed change); null = whole clips")
    talk_sampling_power: float = Field(
        1.0,
        ge=0,
        le=1,
        description="draw training clips so that a talk's (speaker's) share is its duration to this power: 1 = every clip equally "
        "(a long talk as often as it is long), 0 = every talk equally, 0.5 between; an epoch keeps its number of clips",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="keep an exponential moving average of the weights (per step; 0.999 spans about the last 1000 steps): validation, "
        "best.pt and inference use the average; null = the weights as trained",
    )
    augment: AugmentSettings = AugmentSettings()
    init_from: Path | None = Field(
        None,
        description="start from the weights of this checkpoint (fine-tuning; 'packaged' = the model that ships with the package): "
        "its family, architecture and rates must be this run's; the optimiser, schedule and step count start afresh",
    )
    cache_gb: float = Field(2.0, ge=0, description="keep decoded clips in memory when a split fits in this many GB; 0 = read from disk")
    max_minutes: float | None = Field(None, gt=0, description="stop after the first validation past this many minutes of this command (a time-boxed job; --resume goes on)")
    checkpoint_every: int | None = Field(
        500,
        ge=1,
        description="also write last.pt every this many steps between validations, so that a run killed mid-epoch loses at most "
        "that many steps (--resume continues exactly, mid-epoch); null = only at validations",
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
    chunk_seconds: float = Field(20.0, gt=0, description="model window length (plus context_seconds each side); 20 s: the context and overlap computed twice cost 5%, not 10% as at 10 s")
    overlap_seconds: float = Field(0.5, ge=0, description="cross-faded between neighbouring chunks")
    context_seconds: float = Field(0.25, ge=0, description="extra input each side of a chunk, seen by the model and discarded")
    batch_size: int | None = Field(None, ge=1, le=4096, description="model rows per forward pass (chunks x channels); null: 1 on a CPU, 32 on a GPU")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    bf16: bool | Literal["auto"] = Field("auto", description="run the model under bfloat16 autocast; auto: on a GPU, for models that keep their signal path in float32 (bwe)")
    workers: int | None = Field(None, ge=1, description="files upsampled at once; null: 1 on a CPU (torch uses every core), 4 on a GPU")
    output_subtype: Literal["PCM_16", "PCM_24", "FLOAT"] = "PCM_16"
    band_gain: float = Field(
        1.0, ge=0, le=2, description="bwe models: scale what the model adds to the band-limited input (1: as trained; 0.5 is at or above sinc on SNR, LSD, ViSQOL and PESQ-WB, see README)"
    )
    backend: Literal["local", "dask"] = Field(
        "local", description="where upsample runs: local = this machine (workers); dask = the workers of the Dask scheduler at dask_address, each loading a model once"
    )
    dask_address: str | None = Field(
        None, min_length=1, description="the Dask scheduler for backend=dask, tcp://HOST:PORT; every worker must see the inputs, the outputs and the checkpoint at the same paths"
    )

    @field_validator("overlap_seconds")
    @classmethod
    def _overlap_below_chunk(cls, v: float, info) -> float:
        chunk = info.data.get("chunk_seconds")
        if chunk is not None and v * 2 >= chunk:
            raise ValueError(f"overlap_seconds ({v:g}) must be under half of chunk_seconds ({chunk:g})")
        return v


SETTINGS_MODELS: dict[str, type[_Strict]] = {"data": DataSettings, "model": ModelSettings, "training": TrainingSettings, "upsampling": UpsamplingSettings}


class Settings(BaseModel):
    """All four settings files, as loaded for one command."""

    model_config = ConfigDict(extra="forbid")

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    upsampling: UpsamplingSettings = UpsamplingSettings()
