"""``pipeline train`` when things go wrong: one run per run folder (a lock), Ctrl-C and
``training.checkpoint_every`` leave a ``last.pt`` that resumes exactly, a damaged checkpoint field
is one line (never a traceback), and an epoch whose every batch is skipped."""

from __future__ import annotations

import math
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch

import audio_superres.pipeline.training.train as train_module
from audio_superres.models.checkpoint import read_checkpoint
from audio_superres.pipeline.cli import main

from .test_train import _poison, cli_args

# on-the-fly low-res methods and a random gain: the data order and every random choice must come back
EXACT = ["training.epochs=2", "training.warmup_steps=2", 'training.lowres_methods=["soxr","subsample","decimate"]', "training.gain_db=[-6,0]"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# --- one run per folder ---------------------------------------------------------------------------


def test_a_second_run_on_the_run_folder_is_refused_while_the_first_holds_it(clips, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    tried: dict = {}
    real_validate = train_module.validate

    def validate_and_start_another(*args, **kwargs):
        if not tried:  # the first run is under way (its first validation): a fresh run, then a --resume
            tried["codes"] = []
            for extra in ([], ["--resume"]):
                tried["codes"].append(main(["train", "-q", *extra, *cli_args(clips, run, "training.max_steps=1")]))
            tried["err"] = capsys.readouterr().err
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(train_module, "validate", validate_and_start_another)
    assert main(["train", "-q", *cli_args(clips, run, "training.max_steps=3")]) == 0
    held = f"error: {run}: another `pipeline train` run holds this run folder; wait for it to end, or set training.run_dir to another folder"
    assert tried["codes"] == [2, 2] and tried["err"].strip().splitlines() == [held, held]
    assert read_checkpoint(run / "last.pt")["step"] == 3  # the first run's, not replaced
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # the lock leaves no file behind
    # released when the run ends: the next command on the folder goes ahead (releases on errors and
    # Ctrl-C: the resumes in the tests below run in the same process)
    monkeypatch.undo()
    assert main(["train", "-q", "--resume", *cli_args(clips, run, "training.max_steps=4")]) == 0


# --- Ctrl-C and checkpoint_every ----------------------------------------------------------------


def test_ctrl_c_in_the_first_epoch_writes_last_pt_and_resume_equals_an_uninterrupted_run(clips, uninterrupted, tmp_path, monkeypatch, capsys):
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


# --- damaged checkpoints --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def resumable(clips, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("resumable") / "run"
    assert main(["train", "-q", *cli_args(clips, run, "training.max_steps=1")]) == 0
    return run


def _set_python_state(c):
    c["rng"][0]["python"]["state"] = "seeded"


def _drop_moment(c):
    del c["optimizer"]["state"][0]["exp_avg"]


def _nan_weight(c):
    name = next(k for k, v in c["model_state"].items() if v.is_floating_point())
    c["model_state"][name] = c["model_state"][name] * math.nan


def _wrong_shape(c):
    name = next(k for k, v in c["model_state"].items() if v.is_floating_point())
    c["model_state"][name] = c["model_state"][name][..., :1]


DAMAGES = {
    "step as a string": ("step", lambda c: c.update(step="3")),
    "negative epoch_batches": ("epoch_batches", lambda c: c.update(epoch_batches=-1)),
    "best_epoch a fraction": ("best_epoch", lambda c: c.update(best_epoch=1.5)),
    "history not a list": ("history", lambda c: c.update(history={"epoch": 1})),
    "history row without columns": ("history", lambda c: c.update(history=[{"epoch": 1}])),
    "val not a dict": ("val", lambda c: c.update(val=[1])),
    "rng empty": ("rng", lambda c: c.update(rng=[])),
    "rng state of the wrong length": ("rng", lambda c: c["rng"][0].update(torch=c["rng"][0]["torch"][:100])),
    "rng state of the wrong type": ("rng", _set_python_state),
    "optimizer without param_groups": ("optimizer", lambda c: c["optimizer"].pop("param_groups")),
    "optimizer moment missing": ("optimizer", _drop_moment),
    "optimizer lr a string": ("optimizer", lambda c: c["optimizer"]["param_groups"][0].update(lr="fast")),
    "scheduler last_epoch a string": ("scheduler", lambda c: c["scheduler"].update(last_epoch="1")),
    "weights of the wrong shape": ("model_state", _wrong_shape),
    "weights not finite": ("model_state", _nan_weight),
    "data not a dict": ("data", lambda c: c.update(data=5)),
    "training not a dict": ("training", lambda c: c.update(training="fast")),
    "tally without its counts": ("tally", lambda c: c.update(tally=[{"sums": {}}])),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_damaged_checkpoint_fields_on_resume_are_one_line(clips, resumable, tmp_path, capsys, damage):
    field, change = DAMAGES[damage]
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = torch.load(resumable / "last.pt", weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, run / "last.pt")
    assert main(["train", "-q", "--resume", *cli_args(clips, run, "training.max_steps=2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {run / 'last.pt'}: checkpoint field {field} is damaged (") and err.endswith(")"), err


# --- skipped batches ------------------------------------------------------------------------------


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
