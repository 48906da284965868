"""``pipeline train`` (:mod:`audio_superres.pipeline.training.train`) on a few generated clips with a
tiny network (width 8, depth 2): files written, exact resume, the time box, best checkpoint and
early stop, NaN batches skipped and divergence, bad settings and run folders, a model's own loss
terms; and when things go wrong: Ctrl-C and ``training.checkpoint_every`` leave a ``last.pt`` that
resumes exactly, an epoch whose every batch is skipped."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import audio_superres.pipeline.training.train as train_module
from audio_superres.models import registry
from audio_superres.models.checkpoint import load_model, read_checkpoint
from audio_superres.models.losses import training_loss
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.training.data import ClipDataset, load_split

from .conftest import cli_args, settings_for

pytestmark = pytest.mark.usefixtures("one_thread")

# on-the-fly low-res methods and a random gain: the data order and every random choice must come back
EXACT = ["training.epochs=2", "training.warmup_steps=2", 'training.lowres_methods=["soxr","subsample","decimate"]', "training.gain_db=[-6,0]"]


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


@pytest.fixture(scope="module")
def uninterrupted(clips, tmp_path_factory) -> Path:
    """2 epochs of 3 steps, from start to end in one command."""
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(["train", "-q", *cli_args(clips, run, *EXACT, "training.checkpoint_every=null")]) == 0
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    def without_timing(history) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    for name in ("last.pt", "best.pt"):
        a, b = read_checkpoint(run / name), read_checkpoint(reference / name)
        assert (a["step"], a["epoch"], a["best_epoch"]) == (b["step"], b["epoch"], b["best_epoch"]), name
        assert without_timing(a["history"]) == without_timing(b["history"]), name  # train losses and skips included
        for key, tensor in b["model_state"].items():
            assert torch.equal(a["model_state"][key], tensor), (name, key)
        for i, state in b["optimizer"]["state"].items():
            assert torch.equal(a["optimizer"]["state"][i]["exp_avg_sq"], state["exp_avg_sq"]), (name, i)
    assert without_timing(pd.read_csv(run / "history.csv").to_dict("records")) == without_timing(pd.read_csv(reference / "history.csv").to_dict("records"))


@pytest.fixture
def default_sigint():
    """Ctrl-C's own handler for the test: a suite started as a background job of a shell inherits SIGINT
    ignored, and train (rightly) leaves an ignored SIGINT alone, so the test's Ctrl-C would do nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_in_the_first_epoch_writes_last_pt_and_resume_equals_an_uninterrupted_run(clips, uninterrupted, tmp_path, monkeypatch, capsys, default_sigint):
    real = train_module.forward_backward
    calls = {"n": 0}

    def ctrl_c_during_batch_2(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGINT)  # mid-batch: the batch is finished, then the run stops
        return out

    monkeypatch.setattr(train_module, "forward_backward", ctrl_c_during_batch_2)
    run = tmp_path / "run"
    args = cli_args(clips, run, *EXACT, "training.checkpoint_every=null")  # no checkpoint before the first validation but this one
    assert main(["train", "-q", *args]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted: `pipeline train --resume` continues from {run / 'last.pt'} (epoch 1, step 2)"
    last = read_checkpoint(run / "last.pt")
    assert (last["step"], last["epoch_batches"], last["history"]) == (2, 2, [])
    monkeypatch.undo()
    assert main(["train", "-q", "--resume", *args]) == 0
    assert_same_run(run, uninterrupted)

    # interrupted before any checkpoint: said so, not a --resume that would find nothing
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "make_loaders", interrupted)
    fresh = tmp_path / "fresh"
    assert main(["train", "-q", *cli_args(clips, fresh)]) == 130
    assert capsys.readouterr().err.strip() == f"interrupted before the first checkpoint: {fresh} holds no last.pt to resume; start the run again without --resume"
    assert not (fresh / "last.pt").exists()


def test_checkpoint_every_writes_last_pt_mid_epoch_and_a_killed_run_resumes_exactly(clips, uninterrupted, tmp_path, monkeypatch):
    saved = []
    real_save, real_step = train_module.save_checkpoints, train_module.forward_backward
    calls = {"n": 0}

    def recorded(run_dir, checkpoint, best):
        saved.append((checkpoint.step, checkpoint.epoch_batches, best))
        real_save(run_dir, checkpoint, best)

    def killed_at_batch_6(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise RuntimeError("killed")  # as a kill -9 would: nothing more is written
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "save_checkpoints", recorded)
    monkeypatch.setattr(train_module, "forward_backward", killed_at_batch_6)
    run = tmp_path / "run"
    args = cli_args(clips, run, *EXACT, "training.checkpoint_every=2")
    with pytest.raises(RuntimeError, match="killed"):
        main(["train", "-q", *args])
    # steps 2 and 4 mid-epoch, 3 at the end of epoch 1 (its validation's); 6 would be epoch 2's validation
    assert saved == [(2, 2, False), (3, 0, True), (4, 1, False)]
    last = read_checkpoint(run / "last.pt")
    assert (last["step"], last["epoch_batches"], len(last["history"]), last["tally"][0]["batches"]) == (4, 1, 1, 1)
    monkeypatch.undo()
    assert main(["train", "-q", "--resume", *args]) == 0
    assert_same_run(run, uninterrupted)


def test_an_epoch_of_skipped_batches_is_validated_and_skips_in_a_row_add_up_across_epochs(clips, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_module, "MAX_BAD_STEPS_IN_A_ROW", 100)
    _poison(monkeypatch, 4, 6)  # every batch of epoch 2
    run = tmp_path / "run"
    assert main(["train", "-q", *cli_args(clips, run, "training.epochs=3")]) == 0
    history = pd.read_csv(run / "history.csv")
    assert list(history["skipped"]) == [0, 3, 0] and list(history["step"]) == [3, 3, 6]
    assert math.isnan(history["train_loss"][1]) and math.isfinite(history["train_loss"][2]) and math.isfinite(history["val_loss"][1])

    # a run that diverged for good stops even when its epochs are shorter than the limit
    monkeypatch.setattr(train_module, "MAX_BAD_STEPS_IN_A_ROW", 4)
    _poison(monkeypatch, 4, math.inf)
    run = tmp_path / "diverged"
    assert main(["train", "-q", *cli_args(clips, run, "training.epochs=5")]) == 1
    err = capsys.readouterr().err.strip()
    assert "for 4 batches in a row, up to step 4, epoch 3" in err and "last.pt (step 3) is kept" in err
