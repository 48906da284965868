"""Training data: clip pairs listed in ``splits/{train,val}.csv``, as tensors for a DataLoader.

A dataset item is ``(lr, hr)``, float32 tensors of shape ``(1, n)`` and ``(1, n * factor)``.

* By default the low-res input is the stored file (``lr_path``), made by ``pipeline splice`` with
  ``data.lowres``.
* With ``training.lowres_methods`` naming other methods (or several), the input is made on the fly
  from the high-res clip with a method drawn per example, so that the model does not learn the
  fingerprint of one resampler; ``training.gain_db`` adds a random level change to each pair.
* ``training.speed`` resamples each training clip by a random factor first (speed perturbation, as
  in ASR recipes: pitch, formants and tempo move together, so one speaker gives many voices), and
  ``training.crop_seconds`` trains on a window at a random offset (a multiple of the factor, so the
  input stays aligned): without them a model of a few million weights starts to learn the training
  clips by heart after ~15 passes over 86 minutes of speech (validation SNR falls while training loss goes on down).
* ``training.talk_sampling_power`` draws the clips of an epoch by talk (speaker) rather than
  uniformly: a talk's share is its duration to that power (1: as long as it is, the default; 0:
  every talk as often), for corpora where a few long talks would drown many short speakers
  (:class:`TalkBalancedSampler`).
* The random choices of an example depend only on ``(seed, epoch, index)`` (and, for a clip drawn
  twice in one epoch, which draw it is): the batch sampler hands the dataset ``(index, epoch)`` keys,
  so the same epoch gives the same examples whatever the number of workers, and a resumed run sees
  exactly what an uninterrupted one would have.
* Clips are short files; decoding them every epoch costs more than the model on a small GPU, so a
  split that fits in ``training.cache_gb`` is decoded once into one flat int16 array (the precision
  splice writes), which forked DataLoader workers share without copying.
"""

from __future__ import annotations

import fractions
import functools
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.signal
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from audio_superres.preprocessing.audio import AudioError, pcm16_ints, read_audio, to_pcm16
from audio_superres.preprocessing.augment import OFF, Augmentation, augment
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.parallel import parallel_map
from audio_superres.preprocessing.tables import TableError, read_table

SPLIT_COLUMNS = ("clip_id", "hr_path", "lr_path", "seconds", "sample_rate", "low_rate", "lowres")


@functools.lru_cache(maxsize=256)
def _speed_filter(up: int, down: int) -> np.ndarray:
    """Low-pass for :func:`change_speed`: cut at 0.995 of the lower Nyquist frequency, 32 zero
    crossings a side, Kaiser beta 9 (soxr HQ, by contrast, empties the top 200 Hz below 8 kHz of a
    16 kHz clip: a model trained on such targets learns to leave that band empty, and LSD counts it)."""
    width = max(up, down)
    return scipy.signal.firwin(64 * width + 1, 0.995 / width, window=("kaiser", 9.0)).astype(np.float32)  # resample_poly scales it by up


def change_speed(x: np.ndarray, speed: float, max_denominator: int = 50) -> np.ndarray:
    """``x`` played ``speed`` times faster (every frequency times ``speed``, ``len(x) / speed``
    samples), as a rational resampling ``up / down ~= 1 / speed`` (denominator at most
    ``max_denominator``, so the speed is rounded to within 0.05%) that keeps the band up to the
    Nyquist frequency."""
    ratio = fractions.Fraction(1.0 / speed).limit_denominator(max_denominator)
    up, down = ratio.numerator, ratio.denominator
    if up == down:
        return x
    return scipy.signal.resample_poly(x, up, down, window=_speed_filter(up, down)).astype(np.float32)


class DataError(Exception):
    """Training data that cannot be used; the message is one line naming the file."""

    def __init__(self, message: str):
        # a DataLoader worker re-raises this with the worker's traceback as the message: keep the
        # last line, which is the original one-line message
        if "Traceback" in message:
            message = message.strip().splitlines()[-1].split("DataError: ", 1)[-1]
        super().__init__(message)


def load_split(output_dir: str | Path, name: str) -> pd.DataFrame:
    """The rows of ``output_dir/splits/name.csv``, checked for the columns training needs."""
    path = Path(output_dir) / "splits" / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"{path}: no such split file; run `pipeline splice` and `pipeline split` (data.output_dir = {output_dir})")
    try:
        rows = read_table(path, text=("clip_id", "hr_path", "lr_path", "lowres"), numbers=("seconds", "sample_rate", "low_rate"), remake="re-run `pipeline split`")
    except TableError as e:
        raise DataError(str(e)) from None
    if "talk" in rows.columns:
        rows["talk"] = rows["talk"].astype(str)
    if rows.empty:
        raise DataError(f"{path}: holds no clips; the {name} split is empty (check data.splits)")
    return rows


def split_info(rows: pd.DataFrame, path: str | Path) -> dict:
    """``{"sample_rate", "low_rate", "factor", "lowres"}`` that made the clips of one split; a split
    mixing clips made differently is an error (one model learns one rate ratio)."""
    info = {}
    for column in ("sample_rate", "low_rate", "lowres"):
        values = rows[column].unique()
        if len(values) != 1:
            raise DataError(f"{path}: clips made with different {column} values ({', '.join(map(str, values))}); re-run splice into an empty folder")
        info[column] = values[0].item() if hasattr(values[0], "item") else values[0]
    if info["sample_rate"] % info["low_rate"]:
        raise DataError(f"{path}: sample_rate {info['sample_rate']} is not a multiple of low_rate {info['low_rate']}")
    info["factor"] = info["sample_rate"] // info["low_rate"]
    return info


def _read_int16(path: Path) -> np.ndarray:
    try:
        x, _ = read_audio(path)
    except AudioError as e:
        raise DataError(str(e)) from None
    return pcm16_ints(x)


class ClipStore:
    """Decoded clips of one column (``hr_path`` or ``lr_path``): in one flat int16 array when
    cached, else read from disk at each access."""

    def __init__(self, root: Path, rel_paths: Sequence[str], cache: bool, quiet: bool = True, desc: str = ""):
        self.paths = [root / p for p in rel_paths]
        self.flat: np.ndarray | None = None
        if cache:
            clips = [None] * len(self.paths)

            def load(i: int) -> tuple[int, np.ndarray]:
                return i, _read_int16(self.paths[i])

            for i, clip in parallel_map(load, range(len(self.paths)), n_jobs=4, desc=desc, unit="clip", quiet=quiet):
                clips[i] = clip
            lengths = np.array([len(c) for c in clips], dtype=np.int64)
            self.offsets = np.concatenate([[0], np.cumsum(lengths)])
            self.flat = np.concatenate(clips) if clips else np.zeros(0, np.int16)

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> np.ndarray:
        """Clip ``i`` as float32 in [-1, 1)."""
        if self.flat is not None:
            clip = self.flat[self.offsets[i] : self.offsets[i + 1]]
        else:
            clip = _read_int16(self.paths[i])
        return clip.astype(np.float32) / 32768.0


def cache_fits(rows: pd.DataFrame, with_lr: bool, cache_gb: float) -> bool:
    """Whether the decoded clips of ``rows`` (int16) take at most ``cache_gb``."""
    samples = float((rows["seconds"] * rows["sample_rate"]).sum())
    if with_lr:
        samples += float((rows["seconds"] * rows["low_rate"]).sum())
    return cache_gb > 0 and samples * 2 <= cache_gb * 1e9


class ClipDataset(Dataset):
    """``(lr, hr)`` pairs of one split.

    ``methods``: ``None`` uses the stored low-res files; a list makes the input from the high-res clip
    with one of them per example (drawn at random in training; in order ``index % len`` otherwise, so
    that validation is the same every epoch). ``gain_db`` (training only) scales each pair by a
    random gain, lowered where it would push the clip past full scale. ``speed`` (needs ``methods``)
    resamples it by a random factor and ``crop_seconds`` cuts a window at a random offset (training
    only; the crop must fit in the shortest clip at the highest speed).
    """

    def __init__(
        self,
        root: str | Path,
        rows: pd.DataFrame,
        factor: int,
        sample_rate: int,
        methods: Sequence[str] | None = None,
        gain_db: tuple[float, float] = (0.0, 0.0),
        speed: tuple[float, float] = (1.0, 1.0),
        crop_seconds: float | None = None,
        augmentation: Augmentation = OFF,
        train: bool = True,
        seed: int = 0,
        cache: bool = False,
        quiet: bool = True,
        name: str = "",
    ):
        root = Path(root)
        self.factor, self.sample_rate = factor, sample_rate
        self.methods = list(methods) if methods else None
        self.gain_db = tuple(gain_db) if train else (0.0, 0.0)
        self.speed = tuple(speed) if train else (1.0, 1.0)
        self.augmentation = augmentation if train else OFF
        if self.augmentation.active and not methods:
            raise DataError("training.augment needs training.lowres_methods: the input must be made from the augmented clip")
        if self.speed != (1.0, 1.0) and not self.methods:
            raise DataError("training.speed needs training.lowres_methods: the input must be made from the changed clip")
        self.crop = None
        if train and crop_seconds:
            self.crop = int(crop_seconds * sample_rate) // factor * factor
            shortest = float(rows["seconds"].min())
            # the speed is rounded to a ratio of small integers (change_speed): 1% to spare
            if self.crop > int(shortest * sample_rate / self.speed[1] * (0.99 if self.speed[1] != 1.0 else 1.0)):
                raise DataError(f"training.crop_seconds {crop_seconds:g} is longer than the shortest training clip ({shortest:g} s)" + (f" at speed {self.speed[1]:g}" if self.speed[1] != 1.0 else ""))
        self.train, self.seed = train, seed
        self.clip_ids = list(rows["clip_id"])
        self.hr = ClipStore(root, list(rows["hr_path"]), cache, quiet, desc=f"caching {name} clips")
        self.lr = None if self.methods else ClipStore(root, list(rows["lr_path"]), cache, quiet, desc=f"caching {name} inputs")

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, key: int | tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        index, epoch, repeat = (*key, 0)[:3] if isinstance(key, tuple) else (key, 0, 0)
        # a clip drawn a second time in one epoch (talk-balanced sampling) gets choices of its own
        rng = np.random.default_rng([self.seed, epoch, index] + ([repeat] if repeat else []))
        hr = self.hr.get(index)
        if self.speed != (1.0, 1.0):
            # played ``speed`` times faster: every frequency times ``speed``, length divided by it
            hr = to_pcm16(change_speed(hr, rng.uniform(*self.speed)))
        offset = 0
        if self.crop is not None:
            offset = int(rng.integers((len(hr) - self.crop) // self.factor + 1)) * self.factor
            hr = hr[offset : offset + self.crop]
        if self.augmentation.active:  # a random channel, before the input is made from the clip
            hr = to_pcm16(augment(hr, self.sample_rate, self.augmentation, rng))
        gain = 1.0
        if self.gain_db != (0.0, 0.0):
            peak = float(np.abs(hr).max())
            gain = 10 ** (rng.uniform(*self.gain_db) / 20)
            if peak > 0:
                gain = min(gain, 32767 / 32768 / peak)
            hr = to_pcm16(hr * gain)
        if self.methods is None:
            lr = self.lr.get(index)
            if self.crop is not None:
                lr = lr[offset // self.factor : (offset + self.crop) // self.factor]
            if gain != 1.0:
                lr = to_pcm16(lr * gain)
        else:
            method = self.methods[rng.integers(len(self.methods)) if self.train else index % len(self.methods)]
            lr = to_pcm16(make_lowres(hr, self.factor, method, self.sample_rate))
        if len(hr) != len(lr) * self.factor:
            raise DataError(f"{self.clip_ids[index]}: high-res clip has {len(hr)} samples, low-res {len(lr)}; expected factor {self.factor}")
        return torch.from_numpy(lr).unsqueeze(0), torch.from_numpy(hr).unsqueeze(0)


class TalkBalancedSampler(Sampler):
    """Each epoch, ``len(talks)`` clip indices drawn with replacement so that a talk's share of them
    is its duration ``** power`` (normalised), clips within a talk equally; seeded by ``(seed,
    epoch)`` and cut into ``num_replicas`` equal shares as :class:`DistributedSampler` does (the
    interface :class:`EpochBatches` needs: ``set_epoch``, ``len``, iteration)."""

    def __init__(self, talks: Sequence[str], seconds: Sequence[float], power: float, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        table = pd.DataFrame({"talk": list(talks), "seconds": np.asarray(seconds, dtype=np.float64)})
        duration = table.groupby("talk")["seconds"].transform("sum").to_numpy()
        count = table.groupby("talk")["seconds"].transform("size").to_numpy()
        weights = duration**power / count  # the talk's share, spread evenly over its clips
        self.probabilities = weights / weights.sum()
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, seed, 0
        self.num_samples = math.ceil(len(table) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """``(index, k)``: clip ``index``, drawn for the ``k``-th time this epoch before (0 the first time)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        drawn = rng.choice(len(self.probabilities), size=self.num_samples * self.num_replicas, p=self.probabilities)
        # counted over every process's draws, so that no two processes make the same example
        repeats = pd.Series(drawn).groupby(drawn).cumcount().to_numpy()
        share = slice(self.rank, None, self.num_replicas)
        return zip(drawn[share].tolist(), repeats[share].tolist())


class EpochBatches(Sampler):
    """Batches of ``(index, epoch)`` keys in the order of a :class:`DistributedSampler` (which, with
    ``num_replicas=1``, is a seeded shuffle) or a :class:`TalkBalancedSampler`, able to skip the
    batches a resumed run has already done. A clip that the talk-balanced sampler draws again in an
    epoch comes as ``(index, epoch, k)``, ``k`` counting the draws before, so that its random choices differ.

    Call :meth:`set_epoch` before iterating each epoch."""

    def __init__(self, sampler: DistributedSampler | TalkBalancedSampler, batch_size: int):
        self.sampler, self.batch_size = sampler, batch_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.sampler.set_epoch(epoch)

    def full_length(self) -> int:
        """Batches in a whole epoch (per process)."""
        return math.ceil(len(self.sampler) / self.batch_size)

    def __len__(self) -> int:
        return max(self.full_length() - self.skip, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        keys = []
        for drawn in self.sampler:
            i, k = drawn if isinstance(drawn, tuple) else (drawn, 0)
            keys.append((i, self.epoch, k) if k else (i, self.epoch))
        for start in range(self.skip * self.batch_size, len(keys), self.batch_size):
            yield keys[start : start + self.batch_size]


def make_loader(dataset: Dataset, num_workers: int, pin_memory: bool, seed: int, batch_sampler: Sampler | None = None, batch_size: int = 1) -> DataLoader:
    """A DataLoader with its own generator (so that making an iterator never draws from the global
    torch RNG, which dropout uses and a checkpoint restores) and persistent workers."""
    kwargs = dict(batch_sampler=batch_sampler) if batch_sampler is not None else dict(batch_size=batch_size, shuffle=False)
    return DataLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
        **kwargs,
    )
