"""The run folder (:mod:`audio_superres.pipeline.training.run_files`): one ``pipeline train`` run
holds it at a time, and releases it when it ends."""

from __future__ import annotations

import pytest

import audio_superres.pipeline.training.train as train_module
from audio_superres.models.checkpoint import read_checkpoint
from audio_superres.pipeline.cli import main

from .conftest import cli_args

pytestmark = pytest.mark.usefixtures("one_thread")


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
