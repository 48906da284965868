"""Chunked inference (:mod:`audio_superres.pipeline.inference.chunking`): the output stays sample
aligned with the input and, over 20 s of many chunks, equals one pass of the network with no
clicks at the joins."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from torch import nn

from audio_superres.models.registry import build_model
from audio_superres.pipeline.inference import ChunkPlan, Upsampler, upsample_array, upsample_file
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import ModelSettings, UpsamplingSettings

from ..conftest import FACTOR, HIGH, LOW, cubic_upsampler
from .conftest import short_chunks, snr_db


def test_native_rate_output_is_sample_aligned(tmp_path):
    # the cubic spline passes through its knots: low-res sample k must come back at output k * factor
    x = to_pcm16(make_lowres(synth_speech(3.0, HIGH, seed=2), FACTOR))
    sf.write(tmp_path / "in.wav", x, LOW, subtype="PCM_16")
    upsample_file(tmp_path / "in.wav", tmp_path / "out.wav", cubic_upsampler(), short_chunks(), subtype="FLOAT")
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == HIGH and len(y) == FACTOR * len(x)
    np.testing.assert_allclose(y[::FACTOR], x, atol=1e-5)


def _wide_untrained_audiounet() -> nn.Module:
    """An untrained audiounet whose U-Net output is not negligible (its last layer starts near zero
    by design; here it is scaled up so that the network, not the interpolation, dominates what the
    chunking could break)."""
    torch.manual_seed(0)
    model = build_model(ModelSettings(name="audiounet", width=4, depth=4, dropout=0.0), FACTOR).eval()
    nn.init.normal_(model.unet.last.weight, std=0.1)
    return model


def test_chunked_output_matches_one_pass_over_20_seconds():
    model = _wide_untrained_audiounet()
    lr = to_pcm16(make_lowres(synth_speech(20.0, HIGH, seed=4), FACTOR))
    with torch.inference_mode():
        whole = model(torch.from_numpy(lr)[None, None])[0, 0].numpy()
        base = model.interpolate(torch.from_numpy(lr)[None, None])[0, 0].numpy()
    assert snr_db(whole, base) < 15  # the network's own contribution is large, so the test can fail
    plan = ChunkPlan.from_settings(UpsamplingSettings(chunk_seconds=2.0, overlap_seconds=0.25, context_seconds=0.25), LOW)
    chunked = upsample_array(lr, Upsampler(model, FACTOR, LOW, batch_size=3), plan)
    assert chunked.shape == whole.shape
    assert snr_db(whole, chunked) >= 35
    # no clicks: the error stays as small in 20 ms around every join as over the whole file
    joins = [(i * plan.hop + edge) * FACTOR for i in range(1, len(lr) // plan.hop + 1) for edge in (0, plan.overlap)]
    for j in joins:
        around = slice(max(0, j - 160), j + 160)
        if j < len(whole):
            assert snr_db(whole[around], chunked[around]) >= 35, f"join at output sample {j}"
