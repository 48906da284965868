"""Resuming a run (:mod:`audio_superres.pipeline.training.progress`): a damaged field of ``last.pt``
is one line naming the field, never a traceback."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from audio_superres.pipeline.cli import main

from .conftest import cli_args

pytestmark = pytest.mark.usefixtures("one_thread")


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
