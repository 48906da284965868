"""Upsampling a file (:mod:`audio_superres.pipeline.inference.files`): output length, rate, channels
and subtype, input at another rate without delay, and the same samples as the in-memory path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import upsample_array, upsample_file
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech

from ..conftest import FACTOR, HIGH, LOW, cubic_upsampler
from .conftest import _write, short_chunks, snr_db


@pytest.mark.parametrize("rate", [LOW, 8000, 44100])
@pytest.mark.parametrize("n", [1, 5, 1234, 11025])  # 11025 frames cross several ~1 s chunks at any rate here
@pytest.mark.parametrize("channels", [1, 2])
def test_output_length_rate_and_channels(tmp_path, rate, n, channels):
    rng = np.random.default_rng(n)
    x = (0.3 * rng.standard_normal((n, channels))).astype(np.float32)
    src = tmp_path / "in.wav"
    sf.write(src, x, rate, subtype="PCM_16")
    result = upsample_file(src, tmp_path / "out.wav", cubic_upsampler(), short_chunks())
    assert result.error == ""
    low_n = max(1, len(soxr.resample(np.zeros(n, np.float32), rate, LOW, quality="HQ"))) if rate != LOW else n
    info = sf.info(tmp_path / "out.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (HIGH, channels, FACTOR * low_n, "PCM_16")
    assert result.seconds == pytest.approx(low_n / LOW)


def test_resampled_input_has_no_delay(tmp_path):
    # a 300 Hz tone given at 8 kHz must come out as the same tone at 16 kHz, not shifted
    t8, t16 = np.arange(3 * 8000) / 8000, np.arange(3 * HIGH) / HIGH
    sf.write(tmp_path / "in.wav", 0.5 * np.sin(2 * np.pi * 300 * t8), 8000, subtype="FLOAT")
    upsample_file(tmp_path / "in.wav", tmp_path / "out.wav", cubic_upsampler(), short_chunks(), subtype="FLOAT")
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    expected = 0.5 * np.sin(2 * np.pi * 300 * t16)
    middle = slice(HIGH // 4, -HIGH // 4)  # away from the resampler's start and end transients
    assert snr_db(expected[middle], y[middle]) > 40


def test_file_path_equals_in_memory_path(tmp_path):
    # evaluate scores upsample_array; users get upsample_file: both must give the same samples
    x = to_pcm16(make_lowres(synth_speech(4.0, HIGH, seed=3), FACTOR))
    sf.write(tmp_path / "in.wav", x, LOW, subtype="PCM_16")
    up, plan = cubic_upsampler(), short_chunks()
    upsample_file(tmp_path / "in.wav", tmp_path / "out.wav", up, plan)
    y, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    np.testing.assert_array_equal(y, to_pcm16(upsample_array(x, up, plan)))


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_output_subtype_setting(tmp_path, checkpoint, subtype):
    src = _write(tmp_path / "a.wav", 0.5)
    out = tmp_path / "b.wav"
    assert main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "-q", "--set", f"upsampling.output_subtype={subtype}"]) == 0
    assert sf.info(out).subtype == subtype
