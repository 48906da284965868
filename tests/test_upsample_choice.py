"""``pipeline upsample`` without a checkpoint: a model per file by its measured band, wideband files
copied in band, outputs named for the output rate, finished outputs skipped, inputs never replaced."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfiltfilt

from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.synth import synth_speech

from .conftest import empty_settings


def _snr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))


def _args(tmp_path, *more: str) -> list[str]:
    return [*more, "--settings", str(empty_settings(tmp_path / "none")), "--device", "cpu"]


def test_a_wideband_file_is_copied_in_band_not_reinvented(tmp_path, capsys):
    x = to_pcm16(synth_speech(2.0, 16000, seed=4))
    sf.write(str(tmp_path / "wide.wav"), x, 16000, subtype="PCM_16")
    assert main(["upsample", str(tmp_path / "wide.wav"), *_args(tmp_path)]) == 0
    y, rate = sf.read(str(tmp_path / "wide_16k.wav"), dtype="float32")
    assert rate == 16000 and np.array_equal(y, x)  # sample for sample: no band replaced
    assert "full band -> copied in band at 16000 Hz (already wideband)" in capsys.readouterr().err


def test_a_narrow_band_file_goes_to_the_model_and_keeps_its_band(tmp_path, capsys):
    truth = synth_speech(3.0, 16000, seed=5)
    narrow = to_pcm16(soxr.resample(soxr.resample(truth, 16000, 4000), 4000, 16000))  # a 16 kHz file, content to ~1.9 kHz
    sf.write(str(tmp_path / "narrow.wav"), narrow, 16000, subtype="PCM_16")
    assert main(["upsample", str(tmp_path / "narrow.wav"), *_args(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "narrow.wav: 16000 Hz, content to 1." in err and "kHz -> speech-4k" in err  # what was measured and chosen
    y, rate = sf.read(str(tmp_path / "narrow_16k.wav"), dtype="float32")
    assert rate == 16000 and len(y) == len(narrow)
    # below 0.85 of the model's input Nyquist (the band soxr leaves flat) the output is the input's band
    sos = butter(10, 0.85 * 2000, fs=16000, output="sos")
    assert _snr(sosfiltfilt(sos, narrow), sosfiltfilt(sos, y)) > 40
    # and above 2 kHz something was added
    high = butter(10, 2500, btype="high", fs=16000, output="sos")
    assert np.sum(sosfiltfilt(high, y) ** 2) > 100 * np.sum(sosfiltfilt(high, narrow) ** 2)


def test_a_rerun_skips_finished_outputs_and_overwrite_redoes_them(tmp_path):
    folder = tmp_path / "talks"
    folder.mkdir()
    for i in range(2):
        sf.write(str(folder / f"t{i}.wav"), soxr.resample(synth_speech(1.0, 16000, seed=i), 16000, 4000), 4000)
    assert main(["upsample", str(folder), "-q", *_args(tmp_path)]) == 0
    outputs = sorted((tmp_path / "talks_16k").iterdir())
    assert [p.name for p in outputs] == ["t0.wav", "t1.wav"]
    stamps = [p.stat().st_mtime_ns for p in outputs]
    assert main(["upsample", str(folder), "-q", *_args(tmp_path)]) == 0
    assert [p.stat().st_mtime_ns for p in outputs] == stamps  # nothing redone
    outputs[0].unlink()  # as if interrupted after the first file
    assert main(["upsample", str(folder), "-q", *_args(tmp_path)]) == 0
    assert outputs[0].exists() and outputs[1].stat().st_mtime_ns == stamps[1]
    assert main(["upsample", str(folder), "-q", "--overwrite", *_args(tmp_path)]) == 0
    assert outputs[1].stat().st_mtime_ns != stamps[1]


def test_an_output_that_would_replace_an_input_is_refused(tmp_path, capsys):
    a_wav = tmp_path / "a.wav"
    sf.write(str(a_wav), np.zeros(4000, np.float32) + 0.1, 4000)
    sf.write(str(tmp_path / "a.flac"), synth_speech(1.0, 4000, seed=2), 4000)
    before = a_wav.read_bytes()
    code = main(["upsample", str(tmp_path / "a.flac"), str(a_wav), "-o", str(tmp_path), *_args(tmp_path)])
    assert code == 2 and a_wav.read_bytes() == before
    assert "would overwrite the input" in capsys.readouterr().err


def test_band_gain_scales_what_the_model_adds(tmp_path):
    low = soxr.resample(synth_speech(2.0, 16000, seed=6), 16000, 4000)
    sf.write(str(tmp_path / "a.wav"), low, 4000)
    high = butter(10, 2500, btype="high", fs=16000, output="sos")
    energy = {}
    for gain in ("0", "0.5", "1"):
        out = tmp_path / f"g{gain}.wav"
        assert main(["upsample", str(tmp_path / "a.wav"), "-o", str(out), "-q", "--set", f"upsampling.band_gain={gain}", *_args(tmp_path)]) == 0
        energy[gain] = float(np.sum(sosfiltfilt(high, sf.read(str(out))[0]) ** 2))
    assert energy["0"] < 1e-4 * energy["1"]  # nothing added: the band-limited input alone
    assert 0.2 < energy["0.5"] / energy["1"] < 0.3  # a quarter of the power at half the gain
