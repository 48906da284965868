"""The training data (:mod:`audio_superres.pipeline.training.data`): random low-res methods and gain,
speed changes and crops, stored clips cached or not, seeded epoch batches, the talk-balanced
sampler."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import torch
from torch.utils.data import DistributedSampler

from audio_superres.pipeline.training.data import ClipDataset, DataError, EpochBatches, TalkBalancedSampler, change_speed, load_split
from audio_superres.preprocessing.lowres import make_lowres

from ...conftest import tone

pytestmark = pytest.mark.usefixtures("one_thread")


def test_random_lowres_methods_and_gain(clips):
    rows = load_split(clips, "train")
    methods = ["soxr", "decimate", "subsample", "butterworth"]
    ds = ClipDataset(clips, rows, 4, 16000, methods=methods, gain_db=(-12.0, 0.0), train=True, seed=3)
    stored = ClipDataset(clips, rows, 4, 16000, cache=True)
    seen = set()
    for i in range(len(ds)):
        lr, hr = ds[(i, 0)]
        assert lr.shape == (1, 2000) and hr.shape == (1, 8000) and lr.dtype == torch.float32
        assert hr.abs().max() <= 1.0
        # hr is the stored clip scaled by a gain in [-12, 0] dB
        ref = stored[i][1]
        gain = float((hr * ref).sum() / (ref * ref).sum())
        assert 10 ** (-12 / 20) - 1e-3 <= gain <= 1 + 1e-3
        # lr is one of the methods applied to hr, at 16 bits
        candidates = {m: make_lowres(hr[0].numpy(), 4, m) for m in methods}
        match = [m for m, x in candidates.items() if np.abs(x - lr[0].numpy()).max() <= 1 / 32768]
        assert match, i
        seen.add(match[0])
        assert torch.equal(ds[(i, 0)][0], lr)  # the same key, the same example
    assert len(seen) >= 3  # drawn at random, not one method
    assert any(not torch.equal(ds[(i, 0)][0], ds[(i, 1)][0]) for i in range(len(ds)))  # new draws each epoch
    # validation uses each method in turn, without gain, the same at every call
    val = ClipDataset(clips, rows, 4, 16000, methods=methods, gain_db=(-12.0, 0.0), train=False)
    for i in (2, 5):
        lr, hr = val[i]
        assert torch.equal(hr, stored[i][1]) and torch.equal(val[i][0], lr)
        assert np.abs(lr[0].numpy() - make_lowres(hr[0].numpy(), 4, methods[i % 4])).max() <= 1 / 32768


def test_speed_and_crop_make_new_voices_of_one_length(clips, tmp_path):
    # clips of a 1 kHz tone: at speed s the window holds an s kHz tone
    import soundfile as sf

    for i in range(12):
        sf.write(tmp_path / f"tone{i}.wav", tone(1000.0, 0.5, 16000), 16000, subtype="PCM_16")
    rows = pd.DataFrame({"clip_id": [f"t{i}" for i in range(12)], "hr_path": [f"tone{i}.wav" for i in range(12)], "seconds": 0.5})
    ds = ClipDataset(tmp_path, rows, 4, 16000, methods=["soxr"], speed=(0.8, 1.25), crop_seconds=0.375, train=True, seed=1)
    speeds = []
    for i in range(len(ds)):
        lr, hr = ds[(i, 0)]
        assert lr.shape == (1, 1500) and hr.shape == (1, 6000)  # 0.375 s at 16 kHz, a multiple of the factor
        assert np.abs(lr[0].numpy() - make_lowres(hr[0].numpy(), 4, "soxr")).max() <= 1 / 32768  # input made after the change
        assert torch.equal(ds[(i, 0)][1], hr)  # the same key, the same example
        spectrum = np.abs(np.fft.rfft(hr[0].numpy() * np.hanning(6000), 1 << 18))
        speeds.append(np.fft.rfftfreq(1 << 18, 1 / 16000)[spectrum.argmax()] / 1000.0)
    assert 0.8 - 1e-3 <= min(speeds) < 0.95 and 1.1 < max(speeds) <= 1.25 + 1e-3  # drawn across the range
    assert not torch.equal(ds[(0, 0)][1], ds[(0, 1)][1])  # new draws each epoch
    # without a speed change the window is the stored clip's samples at an offset that is a multiple of the factor
    stored = ClipDataset(clips, load_split(clips, "train"), 4, 16000, cache=True)
    crop = ClipDataset(clips, load_split(clips, "train"), 4, 16000, crop_seconds=0.25, train=True, seed=1)
    for i in range(3):
        lr, hr = crop[(i, 0)]
        full_lr, full_hr = stored[i]
        offsets = [o for o in range(0, 8000 - 4000 + 1, 4) if torch.equal(full_hr[0, o : o + 4000], hr[0])]
        assert offsets and torch.equal(full_lr[0, offsets[0] // 4 : offsets[0] // 4 + 1000], lr[0])
    # validation sees whole clips, unchanged; a window longer than a clip at the top speed is refused
    val = ClipDataset(tmp_path, rows, 4, 16000, methods=["soxr"], speed=(0.8, 1.25), crop_seconds=0.375, train=False)
    assert val[0][1].shape == (1, 8000) and np.allclose(val[0][1][0].numpy(), tone(1000.0, 0.5, 16000), atol=1 / 32768)
    with pytest.raises(DataError, match=r"crop_seconds 0.399 is longer than the shortest training clip \(0.5 s\) at speed 1.25"):
        ClipDataset(tmp_path, rows, 4, 16000, methods=["soxr"], speed=(0.8, 1.25), crop_seconds=0.399, train=True)
    for speed in np.linspace(1.0, 1.25, 40):  # the rounded ratios never make a clip shorter than that bound
        assert len(change_speed(np.zeros(8000, np.float32), speed)) >= int(8000 / 1.25 * 0.99)


def test_change_speed_keeps_the_top_of_the_band():
    # white noise played 1.2 times faster: the band just below 8 kHz keeps its level (soxr HQ
    # leaves 7.8-8 kHz 30-60 dB down), a tone moves to 1.2 times its frequency, the length to 1 / 1.2
    noise = np.random.default_rng(0).standard_normal(32000).astype(np.float32) * 0.1
    fast = change_speed(noise, 1.2)
    assert abs(len(fast) - 32000 / 1.2) <= 1
    f, p = scipy.signal.welch(fast, 16000, nperseg=2048)
    level = 10 * np.log10(p[(f > 7800) & (f < 7950)].mean() / p[(f > 1000) & (f < 7000)].mean())
    assert level > -6.0, level
    tone1k = tone(1000.0, 1.0, 16000)
    fast_tone = change_speed(tone1k, 1.2)
    spectrum = np.abs(np.fft.rfft(fast_tone * np.hanning(len(fast_tone)), 1 << 18))
    assert abs(np.fft.rfftfreq(1 << 18, 1 / 16000)[spectrum.argmax()] - 1200.0) < 1.0
    assert change_speed(tone1k, 1.0) is tone1k


def test_stored_pairs_cached_or_not_are_the_files(clips):
    rows = load_split(clips, "val")
    cached, disk = ClipDataset(clips, rows, 4, 16000, cache=True), ClipDataset(clips, rows, 4, 16000, cache=False)
    for i in range(len(rows)):
        for a, b in zip(cached[i], disk[i]):
            assert torch.equal(a, b)
    from audio_superres.preprocessing.audio import read_audio

    assert np.array_equal(cached[2][0][0].numpy(), read_audio(clips / rows["lr_path"][2])[0])


def test_epoch_batches_are_seeded_and_skip_what_was_done():
    sampler = DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=0)
    batches = EpochBatches(sampler, 3)
    batches.set_epoch(2)
    full = list(batches)
    assert len(full) == 4 == batches.full_length() and sorted(k[0] for b in full for k in b) == list(range(10))
    assert all(k[1] == 2 for b in full for k in b)
    batches.set_epoch(2, skip=3)
    assert list(batches) == full[3:] and len(batches) == 1
    batches.set_epoch(3)
    assert list(batches) != full
    # two processes share an epoch's clips without overlap
    halves = []
    for rank in range(2):
        b = EpochBatches(DistributedSampler(range(10), num_replicas=2, rank=rank, seed=0), 3)
        b.set_epoch(2)
        halves.append({k[0] for batch in b for k in batch})
    assert halves[0] | halves[1] == set(range(10)) and not halves[0] & halves[1]


def test_talk_balanced_sampler_shares_and_repeats(clips):
    # 3 talks of 60, 30 and 10 clips of 1 s
    talks = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    share = {}
    for power in (1.0, 0.5, 0.0):
        sampler = TalkBalancedSampler(talks, [1.0] * 100, power, seed=3)
        drawn = []
        for epoch in range(200):
            sampler.set_epoch(epoch)
            drawn += [i for i, _ in sampler]
        assert len(sampler) == 100 and len(drawn) == 20000
        share[power] = np.bincount([ord(talks[i]) - ord("a") for i in drawn], minlength=3) / len(drawn)
    expected = {p: np.array([60.0, 30.0, 10.0]) ** p / (np.array([60.0, 30.0, 10.0]) ** p).sum() for p in share}
    for power in share:
        assert np.abs(share[power] - expected[power]).max() < 0.02, (power, share[power])
    # seeded by epoch; two processes split one draw; a clip drawn again carries its repeat count
    sampler = TalkBalancedSampler(talks, [1.0] * 100, 0.0, seed=3)
    sampler.set_epoch(5)
    once, again = list(sampler), list(sampler)
    assert once == again
    sampler.set_epoch(6)
    assert list(sampler) != once
    halves = []
    for rank in range(2):
        part = TalkBalancedSampler(talks, [1.0] * 100, 0.0, num_replicas=2, rank=rank, seed=3)
        part.set_epoch(5)
        halves.append(list(part))
    assert sorted(halves[0] + halves[1]) == sorted(once)
    counts: dict[int, int] = {}
    for i, k in once:
        assert k == counts.get(i, 0)
        counts[i] = k + 1
    assert max(counts.values()) > 1  # the 10 clips of talk c fill a third of the draws
    # the repeats reach the dataset as (index, epoch, k), and make other examples of the same clip
    rows = load_split(clips, "train")
    batches = EpochBatches(TalkBalancedSampler(rows["talk"], rows["seconds"], 0.0, seed=1), 4)
    batches.set_epoch(2)
    keys = [key for batch in batches for key in batch]
    assert all(key[1] == 2 and (len(key) == 2 or key[2] > 0) for key in keys)
    ds = ClipDataset(clips, rows, 4, 16000, methods=["soxr", "subsample", "decimate"], gain_db=(-12.0, 0.0), train=True, seed=1)
    assert not torch.equal(ds[(0, 2)][0], ds[(0, 2, 1)][0]) and torch.equal(ds[(0, 2)][0], ds[(0, 2, 0)][0])
