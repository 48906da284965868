"""The model adapter (:mod:`audio_superres.pipeline.inference.adapter`): no checkpoint installed,
no GPU for ``--device cuda``, and bfloat16 (when it is turned on, and how close it stays)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_superres.models import packaged
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import Upsampler, upsample_array
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech

from ...conftest import empty_settings
from ...models.test_bwe import tiny
from ..conftest import FACTOR, HIGH, LOW, save_tiny_checkpoint
from .conftest import _write, short_chunks, snr_db


def test_no_checkpoint_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(packaged, "PACKAGED_CHECKPOINT", tmp_path / "not_installed.pt")
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "--checkpoint", "packaged", "--settings", str(empty_settings(tmp_path / "none"))]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_bf16_autocast_runs_and_stays_close(tmp_path):
    from audio_superres.models.checkpoint import load_model

    model, _ = load_model(save_tiny_checkpoint(tmp_path / "t.pt"))
    lr = to_pcm16(make_lowres(synth_speech(2.0, HIGH, seed=6), FACTOR))
    plan = short_chunks()
    full = upsample_array(lr, Upsampler(model, FACTOR, LOW), plan)
    half = upsample_array(lr, Upsampler(model, FACTOR, LOW, bf16=True), plan)
    assert half.dtype == np.float32 and half.shape == full.shape
    assert snr_db(full, half) > 30


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when there is no GPU")
def test_cuda_without_gpu_is_a_one_line_error(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "--checkpoint", str(checkpoint), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "a_16k.wav").exists()


def test_upsampler_turns_bf16_on_for_it_alone_when_auto_and_only_on_a_gpu():
    from audio_superres.models.interpolation import Interpolator
    from audio_superres.pipeline.inference import Upsampler

    assert Upsampler(tiny(), FACTOR, 4000, bf16="auto").bf16 is False  # a CPU: float32 (bf16 was 5.6x slower on AVX2)
    assert Upsampler(tiny(), FACTOR, 4000, bf16=True).bf16 is True
    if torch.cuda.is_available():
        assert Upsampler(tiny(), FACTOR, 4000, device="cuda", bf16="auto").bf16 is True
    assert Upsampler(Interpolator(FACTOR, "cubic"), FACTOR, 4000, bf16="auto").bf16 is False
    assert Upsampler(tiny(), FACTOR, 4000, bf16=False).bf16 is False
    assert Upsampler(tiny(), FACTOR, 4000).batch_size == 1  # on a CPU
