"""``pipeline train`` on a few generated clips with a tiny network (width 8, depth 2): files written,
exact resume, best checkpoint, divergence, bad settings, data and loss pieces, DDP on CPU."""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.signal
import torch
from torch import nn
from torch.utils.data import DistributedSampler

import audio_superres.pipeline.training.train as train_module
from audio_superres.models import registry
from audio_superres.models.checkpoint import load_model, read_checkpoint
from audio_superres.models.losses import stft_loss_terms, training_loss
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.training.data import ClipDataset, DataError, EpochBatches, TalkBalancedSampler, change_speed, load_split
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.settings import load_settings

from .conftest import empty_settings, tone

TINY = ["model.name=audiounet", "model.width=8", "model.depth=2"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tests run beside other processes on few cores, where torch's two OpenMP threads wait on
    each other ten times longer than one thread computes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings_for(clips: Path, run_dir: Path, *overrides: str):
    """4 clips a batch: 3 steps an epoch."""
    base = [f"data.output_dir={clips}", f"training.run_dir={run_dir}", "training.batch_size=4", "training.num_workers=0", "training.warmup_steps=2", *TINY]
    return load_settings(None, [*base, *overrides])


def cli_args(clips: Path, run_dir: Path, *overrides: str) -> list[str]:
    args = ["--settings", str(empty_settings(run_dir.parent / "no_settings"))]
    for o in [f"data.output_dir={clips}", f"training.run_dir={run_dir}", "training.batch_size=4", "training.num_workers=0", *TINY, *overrides]:
        args += ["--set", o]
    return args


def test_cli_train_writes_checkpoints_history_and_summary(clips, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *cli_args(clips, run, "training.max_steps=5")]) == 0
    out = capsys.readouterr().out
    assert {"best.pt", "last.pt", "history.csv", "curves.png"} <= {p.name for p in run.iterdir()}
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("train: 5 steps (1.67 epochs)") and "max_steps reached" in summary and str(run) in summary
    history = pd.read_csv(run / "history.csv")
    # 3 steps per epoch: epoch 1 whole, epoch 2 stopped by max_steps after 2 of its steps
    assert list(history["epoch"]) == [1, 2] and list(history["step"]) == [3, 5]
    assert np.isfinite(history[["train_loss", "val_loss", "val_snr", "val_lsd", "val_lsd_hf"]].to_numpy()).all()
    assert read_checkpoint(run / "last.pt")["step"] == 5

    # --quiet: no bars, no summary; the finished run resumed is a no-op
    assert main(["train", "--quiet", "--resume", *cli_args(clips, run, "training.max_steps=5")]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize("extra", [[], ["training.ema_decay=0.8", "training.talk_sampling_power=0"]], ids=["plain", "ema_balanced"])
def test_resume_continues_exactly_as_an_uninterrupted_run(clips, tmp_path, extra):
    # on-the-fly low-res methods and random gain: the data order and every random choice must
    # come back too, and not depend on the number of loader workers; with a moving average, both
    # it and the trained weights
    common = ["training.epochs=2", "training.lr_decay_steps=6", 'training.lowres_methods=["soxr","subsample","decimate"]', "training.gain_db=[-6,0]", *extra]
    whole = train_module.train(settings_for(clips, tmp_path / "whole", *common), quiet=True)
    assert whole.steps == 6

    first = train_module.train(settings_for(clips, tmp_path / "split", *common, "training.max_steps=4"), quiet=True)
    assert first.steps == 4  # stopped in the middle of epoch 2
    rest = train_module.train(settings_for(clips, tmp_path / "split", *common, "training.num_workers=1"), resume=True, quiet=True)
    assert rest.steps == 6

    a, b = read_checkpoint(tmp_path / "whole" / "last.pt"), read_checkpoint(tmp_path / "split" / "last.pt")
    states = ["model_state", "train_state"] if extra else ["model_state"]
    assert ("train_state" in a) == bool(extra)
    for key in states:
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    for i, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][i]["exp_avg_sq"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    # the last validation (same weights, same clips) and the training loss of the last epoch
    assert a["history"][-1]["val_loss"] == b["history"][-1]["val_loss"]
    whole_hist, split_hist = pd.read_csv(tmp_path / "whole" / "history.csv"), pd.read_csv(tmp_path / "split" / "history.csv")
    assert list(split_hist["step"]) == [3, 4, 6]
    assert whole_hist["val_loss"].iloc[0] == split_hist["val_loss"].iloc[0]
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])


def test_time_box_stops_mid_epoch_with_a_checkpoint_and_resume_goes_on(clips, tmp_path, monkeypatch):
    monkeypatch.setattr(train_module, "LOG_EVERY", 1)  # look at the clock after every step
    run = tmp_path / "boxed"
    first = train_module.train(settings_for(clips, run, "training.max_minutes=1e-9"), quiet=True)
    assert (first.stopped, first.steps) == ("time_limit", 1)
    assert "training.max_minutes reached" in first.line()
    assert read_checkpoint(run / "last.pt")["step"] == 1 and len(pd.read_csv(run / "history.csv")) == 1
    second = train_module.train(settings_for(clips, run, "training.max_minutes=1e-9"), resume=True, quiet=True)
    assert second.steps == 2  # the limit counts anew for each command


def test_best_checkpoint_is_the_epoch_with_lowest_val_loss(clips, tmp_path):
    run = tmp_path / "run"
    # a high learning rate makes the val loss go up and down
    summary = train_module.train(settings_for(clips, run, "training.epochs=3", "training.learning_rate=0.03", "training.warmup_steps=0"), quiet=True)
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 3
    best_row = history.loc[history["val_loss"].idxmin()]
    model, info = load_model(run / "best.pt")
    assert info["epoch"] == best_row["epoch"] == summary.best_epoch
    assert info["best_val_loss"] == pytest.approx(best_row["val_loss"], rel=1e-12)
    assert list(history["best"]) == [v == history["val_loss"][: i + 1].min() for i, v in enumerate(history["val_loss"])]
    assert read_checkpoint(run / "last.pt")["epoch"] == 3
    # the stored weights reproduce the stored score
    settings = settings_for(clips, run)
    rows = load_split(clips, "val")
    val_set = ClipDataset(clips, rows, 4, 16000, train=False)
    loader = torch.utils.data.DataLoader(val_set, batch_size=4)
    again = train_module.validate(model, loader, torch.device("cpu"), {"mse_weight": settings.training.mse_weight, "stft_weight": 0.0}, 16000, 4000)
    assert again["val_loss"] == pytest.approx(best_row["val_loss"], rel=1e-5)


def test_early_stop_after_patience_validations_without_improvement(clips, tmp_path, monkeypatch):
    scripted = iter([5.0, 4.0, 4.5, 4.2, 1.0])

    def validate(*args, **kwargs):
        return {**real_validate(*args, **kwargs), "val_loss": next(scripted)}

    real_validate = train_module.validate
    monkeypatch.setattr(train_module, "validate", validate)
    run = tmp_path / "run"
    summary = train_module.train(settings_for(clips, run, "training.epochs=10", "training.patience=2", "training.batch_size=12"), quiet=True)
    assert summary.stopped == "early_stop" and summary.epochs == 4 and summary.best_epoch == 2
    assert list(pd.read_csv(run / "history.csv")["best"]) == [True, True, False, False]
    assert read_checkpoint(run / "best.pt")["epoch"] == 2 and read_checkpoint(run / "last.pt")["epoch"] == 4


def _poison(monkeypatch, from_call: int, to_call: float) -> None:
    calls = {"n": 0}

    def poisoned(pred, target, **kwargs):
        loss, terms = training_loss(pred, target, **kwargs)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if from_call <= calls["n"] <= to_call:
                loss = loss * float("nan")
        return loss, terms

    monkeypatch.setattr(train_module, "training_loss", poisoned)


def test_one_nan_batch_is_skipped_and_the_run_goes_on(clips, tmp_path, monkeypatch):
    _poison(monkeypatch, 5, 5)  # step 5 only: in epoch 2
    run = tmp_path / "run"
    assert main(["train", "--quiet", *cli_args(clips, run, "training.epochs=3")]) == 0
    history = pd.read_csv(run / "history.csv")
    assert list(history["skipped"]) == [0, 1, 0] and list(history["step"]) == [3, 5, 8]  # 9 batches, 8 steps
    model, _ = load_model(run / "best.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nan_loss_in_a_row_stops_and_keeps_the_last_good_checkpoint(clips, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "MAX_BAD_STEPS_IN_A_ROW", 2)
    _poison(monkeypatch, 5, math.inf)  # from step 5 on: in epoch 2, after epoch 1's checkpoint
    run = tmp_path / "run"
    assert main(["train", "--quiet", *cli_args(clips, run, "training.epochs=3")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "loss became nan" in err and "for 2 batches in a row, up to step 5" in err and "last.pt (step 3) is kept" in err
    assert read_checkpoint(run / "last.pt")["step"] == 3
    assert len(pd.read_csv(run / "history.csv")) == 1
    model, _ = load_model(run / "last.pt")
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(
    "override, expected",
    [
        ('training.lowres_methods=["soxr","fft"]', "--set training.lowres_methods"),
        ("training.gain_db=[6,-6]", "gain_db must be [low, high]"),
        ('training.lowres_methods=["soxr","soxr"]', "lists a method twice"),
        ("training.batch_size=0", "--set training.batch_size"),
        ("training.pitch=2", "--set training.pitch: unknown key"),
        ("training.speed=[0,1.1]", "speed must be [low, high] with 0 < low <= high"),
        ("training.speed=[0.9,1.1]", "speed needs lowres_methods"),
        ("training.device=tpu", "--set training.device"),
        ("training.talk_sampling_power=1.5", "--set training.talk_sampling_power: Input should be less than or equal to 1"),
        ("training.ema_decay=1", "--set training.ema_decay: Input should be less than 1"),
        ("data.factor=2", "clips are 16000 Hz with factor 4, but data.sample_rate=16000 and data.factor=2"),
        ("model.name=resnet", "--set model.name: Input should be 'bwe', 'audiounet' or 'tfnet'"),
    ],
)
def test_bad_settings_are_rejected_with_one_line(clips, tmp_path, capsys, override, expected):
    assert main(["train", *cli_args(clips, tmp_path / "run", override)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_run_folder_rules_and_missing_splits(clips, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--resume", *cli_args(clips, run)]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", "-q", *cli_args(clips, run, "training.max_steps=1")]) == 0
    assert main(["train", "-q", *cli_args(clips, run, "training.max_steps=1")]) == 2  # would overwrite the run
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "-q", "--resume", *cli_args(clips, run, "training.max_steps=2", "model.width=4")]) == 2
    assert "other model settings (model.width=8)" in capsys.readouterr().err
    assert main(["train", "-q", *cli_args(tmp_path / "nowhere", tmp_path / "run2")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere" / "splits" / "train.csv") in err and "pipeline split" in err


def test_zero_loss_weights_need_a_model_with_its_own_losses(clips, tmp_path, capsys):
    assert main(["train", *cli_args(clips, tmp_path / "run", "training.mse_weight=0")]) == 2
    assert "nothing to minimise" in capsys.readouterr().err


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


def test_ema_moves_towards_the_weights_and_is_what_best_pt_holds(clips, tmp_path):
    average, model = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        average.weight.fill_(0.0), model.weight.fill_(1.0)
    for step in range(3):  # decay ramps up: min(0.9, 1/10), min(0.9, 2/11), min(0.9, 3/12)
        train_module.update_ema(average, model, 0.9, step)
    assert torch.allclose(average.weight, torch.full((1, 2), 1 - (1 / 10) * (2 / 11) * (3 / 12)))
    for step in range(1000, 1010):  # then the decay itself
        train_module.update_ema(average, model, 0.9, step)
    assert torch.allclose(average.weight, torch.full((1, 2), 1 - (1 / 10) * (2 / 11) * (3 / 12) * 0.9**10))
    # a run: best.pt holds the average (what load_model gives) beside the trained weights
    run = tmp_path / "ema"
    train_module.train(settings_for(clips, run, "training.epochs=2", "training.ema_decay=0.5"), quiet=True)
    best = read_checkpoint(run / "best.pt")
    model, info = load_model(run / "best.pt")
    assert "train_state" not in info
    differs = [not torch.equal(best["model_state"][k], best["train_state"][k]) for k in best["model_state"] if best["model_state"][k].is_floating_point()]
    assert any(differs)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best["model_state"][name])


def test_init_from_starts_at_the_checkpoints_weights_and_checks_they_fit(clips, tmp_path, capsys):
    source = tmp_path / "source"
    train_module.train(settings_for(clips, source, "training.epochs=1", "training.seed=1"), quiet=True)
    start = read_checkpoint(source / "best.pt")["model_state"]
    # a step at a negligible rate: the fine-tuned weights are the source's, not a fresh seed's
    for init, close in ((source / "best.pt", True), (None, False)):
        run = tmp_path / f"tuned_{close}"
        extra = [f"training.init_from={init}"] if init else []
        train_module.train(settings_for(clips, run, "training.max_steps=1", "training.learning_rate=1e-12", *extra), quiet=True)
        tuned = read_checkpoint(run / "last.pt")
        assert all(torch.allclose(tuned["model_state"][k], start[k], atol=1e-6) for k in start) == close
        assert tuned["step"] == 1
    # other loss weights are fine; another architecture, family or a missing file is a one-line error
    train_module.train(settings_for(clips, tmp_path / "w", "training.max_steps=1", f"training.init_from={source / 'best.pt'}", "training.mse_weight=2"), quiet=True)
    for override, expected in (
        ("model.width=16", "its weights do not fit this run's model; it was made with model.width=8"),
        ("model.name=tfnet", "holds a audiounet model; this run trains model.name=tfnet"),
    ):
        code = main(["train", *cli_args(clips, tmp_path / override, f"training.init_from={source / 'best.pt'}", override)])
        assert code == 2 and expected in capsys.readouterr().err
    assert main(["train", *cli_args(clips, tmp_path / "packaged", "training.init_from=packaged")]) == 2
    assert "bwe_speech_4k_16k.pt holds a bwe model; this run trains model.name=audiounet" in capsys.readouterr().err
    assert main(["train", *cli_args(clips, tmp_path / "tune", "training.init_from=packaged", "model.name=bwe", "training.max_steps=1")]) == 0
    assert main(["train", *cli_args(clips, tmp_path / "gone", f"training.init_from={tmp_path / 'none.pt'}")]) == 2
    assert "training.init_from: " in (err := capsys.readouterr().err) and "no such checkpoint file" in err


def test_stft_loss_sanity():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8000) * 0.1
    same = stft_loss_terms(x, x)
    assert same["sc"].item() == pytest.approx(0, abs=1e-6) and same["logmag"].item() == pytest.approx(0, abs=1e-6)
    # losing the high band (what an MSE-trained model does) costs more than a small broadband error
    low = torch.from_numpy(make_lowres(x[0, 0].numpy(), 4)).repeat_interleave(4)[None, None].expand(2, 1, -1)
    noisy = x + 0.01 * torch.randn_like(x)
    assert stft_loss_terms(low, x)["logmag"] > stft_loss_terms(noisy, x)["logmag"] > 0
    # spectral convergence is relative: the same for a scaled pair
    assert stft_loss_terms(3 * noisy, 3 * x)["sc"].item() == pytest.approx(stft_loss_terms(noisy, x)["sc"].item(), rel=1e-4)
    # finite gradients from a silent prediction, and a bf16 prediction is accepted
    pred = torch.zeros_like(x, requires_grad=True)
    total, terms = training_loss(pred, x, mse_weight=1.0, stft_weight=1.0)
    total.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert set(terms) == {"mse", "stft", "sc", "logmag"}
    assert total.item() == pytest.approx(terms["mse"].item() + terms["stft"].item(), rel=1e-6)
    assert torch.isfinite(training_loss(x.bfloat16(), x, stft_weight=1.0)[0])


class _Penalised(nn.Module):
    """A model with its own loss term, as a family may define one."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x

    def training_losses(self, pred, target):
        return {"energy": (pred.float() ** 2).mean() * 10}


def test_model_loss_hook_is_added_and_logged(clips, tmp_path, monkeypatch):
    m = _Penalised()
    x, y = torch.ones(1, 1, 8), torch.zeros(1, 1, 8)
    total, terms = training_loss(m(x), y, mse_weight=1.0, model=m)
    assert set(terms) == {"mse", "energy"} and total.item() == pytest.approx(1 + 10)

    base = registry.FAMILIES["audiounet"]

    class AudioUNetPenalised(base.network):
        def training_losses(self, pred, target):
            return {"lsd": (pred.float() ** 2).mean()}  # named like a score: both must be kept

    monkeypatch.setitem(registry.FAMILIES, "audiounet", registry.Family(AudioUNetPenalised, base.settings))
    run = tmp_path / "run"
    train_module.train(settings_for(clips, run, "model.name=audiounet", "training.mse_weight=0", "training.max_steps=2"), quiet=True)
    history = pd.read_csv(run / "history.csv")
    assert {"train_loss_lsd", "val_loss_lsd", "val_lsd"} <= set(history.columns) and "train_loss_mse" not in history.columns
    assert history["val_loss"][0] == pytest.approx(history["val_loss_lsd"][0])
    assert history["val_lsd"][0] > 1 > history["val_loss_lsd"][0]  # the score, not the term (mean square of speech)


def _ddp_worker(rank: int, port: int, settings, result_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    summary = train_module.train(settings, quiet=True)
    Path(result_dir, f"rank{rank}").write_text(str(summary.steps))


def test_ddp_on_cpu_with_two_processes(clips, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    settings = settings_for(clips, run, "training.epochs=2", "training.batch_size=2")
    ctx = multiprocessing.get_context("fork")  # the children start with everything imported: seconds, not tens
    procs = [ctx.Process(target=_ddp_worker, args=(rank, port, settings, str(tmp_path))) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    # each process takes 2 of the 12 train clips a step: 3 steps an epoch, as one process with 4
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "6"
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 6 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # own dropout streams
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert math.isfinite(checkpoint["best_val_loss"])
