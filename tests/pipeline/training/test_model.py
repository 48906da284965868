"""The networks of a run (:mod:`audio_superres.pipeline.training.model`): the moving average, which
best.pt holds, and ``training.init_from``."""

from __future__ import annotations

import pytest
import torch

import audio_superres.pipeline.training.train as train_module
from audio_superres.models.checkpoint import load_model, read_checkpoint
from audio_superres.pipeline.cli import main

from .conftest import cli_args, settings_for

pytestmark = pytest.mark.usefixtures("one_thread")


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
