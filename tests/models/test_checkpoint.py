"""Checkpoints: a model rebuilt from its file alone, plain weights_only contents, RNG round trip,
and one-line errors for files that are not checkpoints, damaged fields and weights that are not finite."""

from __future__ import annotations

import math
import os
import pickle
import random

import numpy as np
import pytest
import torch

from audio_superres.models.checkpoint import CheckpointError, load_model, rng_state, save_checkpoint, set_rng_state
from audio_superres.models.registry import build_model
from audio_superres.pipeline.cli import main
from audio_superres.settings import ModelSettings

from ..conftest import empty_settings, write_talk

DATA = {"sample_rate": 16000, "factor": 4, "low_rate": 4000, "lowres": ["soxr"]}


def tiny(name: str = "audiounet", **changes) -> ModelSettings:
    return ModelSettings(**{"name": name, "width": 8, "depth": 2, **changes})


def training_checkpoint(settings: ModelSettings) -> dict:
    """What ``pipeline train`` stores, after one optimiser step."""
    torch.manual_seed(0)
    model = build_model(settings, 4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5)
    model(torch.randn(2, 1, 400)).square().mean().backward()
    optimizer.step()
    scheduler.step()
    return {
        "family": settings.name,
        "model": settings.model_dump(mode="json"),
        "data": DATA,
        "model_state": model.state_dict(),
        "epoch": 1,
        "step": 1,
        "best_val_loss": 0.5,
        "history": [{"epoch": 1, "val_loss": 0.5, "best": True}],
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": [rng_state()],
    }


@pytest.mark.parametrize("family", ["audiounet", "tfnet"])
def test_round_trip_rebuilds_an_identical_model(tmp_path, family):
    settings = tiny(family)
    checkpoint = training_checkpoint(settings)
    save_checkpoint(tmp_path / "last.pt", checkpoint)
    original = build_model(settings, 4)
    original.load_state_dict(checkpoint["model_state"])
    original.eval()

    model, info = load_model(tmp_path / "last.pt")
    assert not model.training
    x = torch.randn(3, 1, 500)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    assert info["data"] == DATA and info["family"] == family and info["model"] == settings.model_dump(mode="json")
    assert info["step"] == 1 and "model_state" not in info and "optimizer" not in info


def test_contents_load_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "c.pt", training_checkpoint(tiny()))
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert loaded["format"] == "audio-superres-checkpoint" and loaded["version"] == 1
    assert isinstance(loaded["rng"][0]["torch"], torch.Tensor) and isinstance(loaded["optimizer"]["state"][0]["exp_avg"], torch.Tensor)
    # written under a temporary name that was renamed: nothing else is left in the folder
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_rng_state_round_trip():
    state = rng_state()
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(state)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


class Payload:
    """Any Python object: unpickling it could run code, so weights_only refuses it."""

    def __reduce__(self):
        return (print, ("this must never run",))


class SystemPayload:
    """A call into a module weights_only blocks outright (os)."""

    def __reduce__(self):
        return (os.system, ("echo this must never run",))


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "no such checkpoint file"),
        (b"", "not a checkpoint file (empty)"),
        (b"this is a text file\n", "not a checkpoint file (unrecognised format)"),
        pytest.param(np.random.default_rng(5).bytes(5000), "not a checkpoint file (unrecognised format)", id="random bytes"),
        ("raw pickle", "not a checkpoint file: a plain Python pickle, not PyTorch's format"),
        ("pickled code", "not a checkpoint file: a Python pickle that would import and call code when loaded (arbitrary code), refused for safety"),
        ("pickled code, protocol 0", "not a checkpoint file: a Python pickle that would import and call code when loaded (arbitrary code), refused for safety"),
        ("pickle", "not a valid checkpoint: it holds Python objects other than tensors and plain values, refused for safety (weights_only)"),
        # torch 2.13 words a blocked module differently ("unsupported GLOBAL posix.system whose module posix is blocked")
        ("pickle, os.system", "not a valid checkpoint: it holds Python objects other than tensors and plain values, refused for safety (weights_only)"),
        ({"weights": torch.zeros(2)}, "not a checkpoint written by `pipeline train`"),
        ({"format": "audio-superres-checkpoint", "version": 99}, "version 99 is not supported"),
        ({"format": "audio-superres-checkpoint", "version": 1, "family": "audiounet"}, "checkpoint lacks model, data, model_state"),
    ],
)
def test_bad_files_give_one_line_naming_the_file(tmp_path, capsys, content, problem):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "raw pickle":
        path.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    elif isinstance(content, str) and content.startswith("pickled code"):  # plain pickle.dump, not torch.save: no zip around it
        with open(path, "wb") as f:
            pickle.dump({"format": "audio-superres-checkpoint", "x": Payload()}, f, protocol=0 if content.endswith("0") else pickle.HIGHEST_PROTOCOL)
    elif content == "pickle":
        torch.save({"format": "audio-superres-checkpoint", "version": 1, "x": Payload()}, path)
    elif content == "pickle, os.system":
        torch.save({"format": "audio-superres-checkpoint", "version": 1, "x": SystemPayload()}, path)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert "this must never run" not in capsys.readouterr().out


def test_weights_that_do_not_fit_the_settings(tmp_path):
    checkpoint = training_checkpoint(tiny())
    checkpoint["model"] = tiny(width=16).model_dump(mode="json")
    save_checkpoint(tmp_path / "c.pt", checkpoint)
    with pytest.raises(CheckpointError, match=r"c\.pt: weights do not fit a audiounet model"):
        load_model(tmp_path / "c.pt")
    checkpoint["model"] = {**checkpoint["model"], "name": "resnet"}
    checkpoint["family"] = "resnet"
    save_checkpoint(tmp_path / "d.pt", checkpoint)
    with pytest.raises(CheckpointError, match=r"d\.pt: model settings in the checkpoint are not valid here: model\.name: Input should be 'bwe', 'audiounet' or 'tfnet'"):
        load_model(tmp_path / "d.pt")


@pytest.mark.parametrize("field, value", [("family", 5), ("model", "audiounet"), ("data", [16000, 4]), ("model_state", []), ("model_state", {"w": [1.0]})])
def test_damaged_fields_are_one_line_naming_the_field(tmp_path, field, value):
    checkpoint = training_checkpoint(tiny())
    torch.save({"format": "audio-superres-checkpoint", "version": 1, **checkpoint, field: value}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "c.pt")
    assert str(e.value).startswith(f"{tmp_path / 'c.pt'}: checkpoint field {field} is damaged (") and "\n" not in str(e.value)
    torch.save({"format": "audio-superres-checkpoint", "version": 1, **checkpoint, "data": {**DATA, "factor": "4"}}, tmp_path / "d.pt")
    with pytest.raises(CheckpointError, match=r"d\.pt: checkpoint field data is damaged \(factor is str '4', not a whole number > 0\)"):
        load_model(tmp_path / "d.pt")


@pytest.mark.parametrize("value, problem", [(math.nan, "NaN or infinite"), (-math.inf, "NaN or infinite"), (3e7, "magnitude 3e+07, beyond 1e+06")])
def test_weights_not_finite_or_absurd_are_refused_and_upsample_writes_nothing(tmp_path, capsys, value, problem):
    checkpoint = training_checkpoint(tiny())
    name = next(k for k, v in checkpoint["model_state"].items() if v.is_floating_point())
    checkpoint["model_state"][name] = checkpoint["model_state"][name].clone()
    checkpoint["model_state"][name].view(-1)[0] = value
    save_checkpoint(tmp_path / "bad.pt", checkpoint)
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "bad.pt")
    message = str(e.value)
    assert message.startswith(f"{tmp_path / 'bad.pt'}: checkpoint field model_state is damaged ({name} holds ") and problem in message and "\n" not in message
    talk = write_talk(tmp_path / "in" / "talk.wav", 1.0, sample_rate=4000)
    out = tmp_path / "out"
    assert main(["upsample", str(talk), "-o", str(out), "--checkpoint", str(tmp_path / "bad.pt"), "-q", "--settings", str(empty_settings(tmp_path / "no_settings"))]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not out.exists() or not any(out.iterdir())
