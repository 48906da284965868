"""The data of a run: the splits checked against the settings (:func:`read_clips`), then the
datasets, samplers and loaders (:func:`make_loaders`). Every process walks its share of one seeded
order of the training clips; rank 0 alone validates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from torch.utils.data import DataLoader, DistributedSampler

from audio_superres.models.checkpoint import CheckpointData
from audio_superres.preprocessing.augment import Augmentation
from audio_superres.settings import Settings

from .data import ClipDataset, EpochBatches, TalkBalancedSampler, cache_fits, load_split, make_loader, split_info
from .errors import TrainingError
from .processes import Processes


@dataclass
class Clips:
    """The train and val clips a run learns from, and how its inputs are made."""

    folder: Path  # data.output_dir
    train_rows: pd.DataFrame
    val_rows: pd.DataFrame
    data: CheckpointData  # what the model learns: rates and low-res methods, as its checkpoint records them
    on_the_fly: bool  # the input is made from the high-res clip (training.lowres_methods), not read from lr_path
    stored_lowres: str  # the method that made the stored low-res files

    @property
    def methods(self) -> list[str] | None:
        """The low-res methods the datasets apply, ``None`` to read the stored files."""
        return self.data["lowres"] if self.on_the_fly else None


def read_clips(settings: Settings) -> Clips:
    """The train and val splits of ``data.output_dir``, which say how their clips were made: the
    model learns exactly that rate ratio (or, with ``training.lowres_methods``, the settings' one)."""
    t = settings.training
    clips_dir = Path(settings.data.output_dir)
    train_rows, val_rows = load_split(clips_dir, "train"), load_split(clips_dir, "val")
    info = split_info(train_rows, clips_dir / "splits" / "train.csv")
    val_info = split_info(val_rows, clips_dir / "splits" / "val.csv")
    if val_info != info:  # compared as the clips were made, before an on-the-fly factor
        raise TrainingError(f"{clips_dir / 'splits'}: train and val clips were made differently ({info} vs {val_info})")
    # any lowres_methods, even the data's own, make the input from the high-res clip: then the
    # stored low-res files need not exist (a compact copy of the clips carries only high-res ones),
    # and one set of clips trains a model for any data.factor (8, 4 or 2 kHz input from 16 kHz clips)
    on_the_fly = bool(t.lowres_methods)
    if on_the_fly and info["sample_rate"] == settings.data.sample_rate:
        info = {**info, "factor": settings.data.factor, "low_rate": settings.data.low_rate}
    if (info["sample_rate"], info["factor"]) != (settings.data.sample_rate, settings.data.factor):
        raise TrainingError(
            f"{clips_dir / 'splits' / 'train.csv'}: clips are {info['sample_rate']} Hz with factor {info['factor']}, "
            f"but data.sample_rate={settings.data.sample_rate} and data.factor={settings.data.factor}; use the settings that made the clips"
            + ("" if on_the_fly else ", or set training.lowres_methods to make the input from the high-res clips at any factor")
        )
    methods = list(t.lowres_methods) if on_the_fly else [info["lowres"]]
    data = CheckpointData(sample_rate=info["sample_rate"], factor=info["factor"], low_rate=info["low_rate"], lowres=methods)
    return Clips(clips_dir, train_rows, val_rows, data, on_the_fly, info["lowres"])


@dataclass
class Loaders:
    train_set: ClipDataset
    cached: bool  # the training clips are decoded once into memory
    batches: EpochBatches  # set_epoch(epoch, skip) before each epoch
    train: DataLoader
    val: DataLoader | None  # rank 0's alone

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.full_length()


def make_loaders(settings: Settings, clips: Clips, procs: Processes, quiet: bool) -> Loaders:
    """Training clips drawn uniformly (``DistributedSampler``) or by talk (``training.talk_sampling_power``),
    shared among the processes; the validation clips in order, on rank 0."""
    t = settings.training
    factor, rate = clips.data["factor"], clips.data["sample_rate"]
    cached = cache_fits(clips.train_rows, not clips.on_the_fly, t.cache_gb)
    train_set = ClipDataset(
        clips.folder, clips.train_rows, factor, rate, clips.methods, t.gain_db, t.speed, t.crop_seconds,
        Augmentation(**t.augment.model_dump()), train=True, seed=t.seed, cache=cached, quiet=quiet or not procs.master, name="train",
    )  # fmt: skip
    if t.talk_sampling_power == 1.0:
        sampler = DistributedSampler(train_set, num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=t.seed)
    else:
        if "talk" not in clips.train_rows.columns:
            raise TrainingError(f"{clips.folder / 'splits' / 'train.csv'}: no talk column, which training.talk_sampling_power needs; re-run `pipeline split`")
        sampler = TalkBalancedSampler(clips.train_rows["talk"], clips.train_rows["seconds"], t.talk_sampling_power, procs.world, procs.rank, t.seed)
    batches = EpochBatches(sampler, t.batch_size)
    pin = procs.device.type == "cuda"
    train_loader = make_loader(train_set, t.num_workers, pin, t.seed, batch_sampler=batches)
    val_loader = None
    if procs.master:
        val_set = ClipDataset(
            clips.folder, clips.val_rows, factor, rate, clips.methods,
            train=False, seed=t.seed, cache=cache_fits(clips.val_rows, not clips.on_the_fly, t.cache_gb), quiet=quiet, name="val",
        )  # fmt: skip
        val_loader = make_loader(val_set, t.num_workers, pin, t.seed + 1, batch_size=t.batch_size)
    return Loaders(train_set, cached, batches, train_loader, val_loader)
