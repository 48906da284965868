"""``pipeline upsample`` (:mod:`audio_superres.pipeline.inference.upsample`): with a checkpoint,
the default output beside the input, bad inputs failing alone, several files at once, quiet; without
one, a model per file by its measured band, wideband files copied in band, outputs named for the
output rate, finished outputs skipped, inputs never replaced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from scipy.signal import butter, sosfiltfilt

from audio_superres.models import packaged
from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.synth import synth_speech

from ...conftest import empty_settings
from ..conftest import FACTOR, HIGH, LOW
from .conftest import _write


def leftover_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


def _snr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(a**2) / np.sum((a - b) ** 2)))


def _args(tmp_path, *more: str) -> list[str]:
    return [*more, "--settings", str(empty_settings(tmp_path / "none")), "--device", "cpu"]


def test_one_file_default_output_beside_it(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "talk.wav", 1.5, rate=8000, channels=2)
    assert main(["upsample", str(src), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    out = tmp_path / "talk_16k.wav"  # named for the output rate
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (HIGH, 2, FACTOR * round(1.5 * LOW))
    printed = capsys.readouterr()
    assert "8000 Hz resampled to the model's input rate 4000 Hz" in printed.out + printed.err
    assert "upsample: 1 file(s) done (1 with the given model), 0 already done, 0 failed" in printed.out


def test_bad_inputs_fail_alone_with_one_line_each(tmp_path, checkpoint, capsys):
    src = tmp_path / "in"
    _write(src / "good.wav", 1.0)
    (src / "empty.wav").write_bytes(b"")
    (src / "garbage.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    nan = np.zeros(3 * 65536, np.float32)  # NaN after the first blocks: output has started when it is met
    nan[2 * 65536 + 7] = np.nan
    sf.write(src / "nan.wav", nan, LOW, subtype="FLOAT")
    no_audio = tmp_path / "no_audio"
    no_audio.mkdir()
    (no_audio / "readme.txt").write_text("x")
    out = tmp_path / "out"
    small = ["--set", "upsampling.chunk_seconds=2", "--set", "upsampling.batch_size=1"]  # writing starts before the NaN
    code = main(["upsample", str(src), str(no_audio), str(tmp_path / "missing.wav"), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet", *small])
    assert code == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 5
    for name, problem in [("empty.wav", "empty file"), ("garbage.wav", "not a readable audio file"), ("nan.wav", "NaN"), ("no_audio", "no audio files"), ("missing.wav", "no such file")]:
        assert any(name in line and problem in line for line in err), (name, err)
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["good.wav"]
    assert leftover_temporaries(out) == []


def test_files_upsampled_at_once_equal_one_at_a_time_and_fail_alone(tmp_path, checkpoint, capsys):
    src = tmp_path / "in"
    for k in range(4):
        _write(src / f"talk_{k}.wav", 0.5 + k, seed=k)
    (src / "broken.wav").write_bytes(b"RIFF")
    outputs = {}
    for workers in (1, 3):
        out = tmp_path / f"out_{workers}"
        code = main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet", "--set", f"upsampling.workers={workers}"])
        assert code == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(err) == 1 and "broken.wav" in err[0]
        outputs[workers] = {p.name: sf.read(p, dtype="int16")[0] for p in sorted(out.iterdir())}
        assert leftover_temporaries(out) == []
    assert sorted(outputs[3]) == [f"talk_{k}.wav" for k in range(4)]
    for name, audio in outputs[1].items():
        assert np.array_equal(outputs[3][name], audio), name


def test_packaged_model_is_the_default(tmp_path, capsys):
    """`pipeline upsample talk.wav` with no checkpoint uses the model shipped in the package."""
    assert packaged.PACKAGED_CHECKPOINT.is_file()
    src = _write(tmp_path / "talk.wav", 1.0, rate=8000)
    assert main(["upsample", str(src), "--settings", str(empty_settings(tmp_path / "none")), "--device", "cpu"]) == 0
    out = tmp_path / "talk_16k.wav"
    info = sf.info(out)
    assert (info.samplerate, info.frames, info.channels) == (16000, 16000, 1)


def test_quiet_prints_nothing(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "a.wav", 0.5, rate=8000)
    assert main(["upsample", str(src), "--checkpoint", str(checkpoint), "-q"]) == 0
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""


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
