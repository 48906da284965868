"""``pipeline upsample`` and the chunked inference under it, on generated audio and tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from torch import nn

from audio_superres.models import packaged
from audio_superres.models.checkpoint import save_checkpoint
from audio_superres.models.interpolation import Interpolator
from audio_superres.models.registry import build_model
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import ChunkPlan, Upsampler, plan_outputs, upsample_array, upsample_file
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import ModelSettings, UpsamplingSettings

from .conftest import empty_settings

LOW, FACTOR, HIGH = 4000, 4, 16000


def save_tiny_checkpoint(path: Path, width: int = 2, depth: int = 2, seed: int = 0) -> Path:
    """An untrained audiounet saved as `pipeline train` would (4 kHz -> 16 kHz, soxr low-res)."""
    torch.manual_seed(seed)
    settings = ModelSettings(name="audiounet", width=width, depth=depth)
    model = build_model(settings, FACTOR)
    save_checkpoint(
        path,
        {"family": settings.name, "model": settings.model_dump(mode="json"), "data": {"sample_rate": HIGH, "factor": FACTOR, "low_rate": LOW, "lowres": ["soxr"]}, "model_state": model.state_dict()},
    )
    return path


def cubic_upsampler(batch_size: int = 4) -> Upsampler:
    return Upsampler(Interpolator(FACTOR, "cubic"), FACTOR, LOW, batch_size=batch_size)


def short_chunks(**changes) -> ChunkPlan:
    """Chunks of about 1 s so that a few seconds of audio cross several joins."""
    base = {"chunk_seconds": 1.0, "overlap_seconds": 0.1, "context_seconds": 0.1}
    return ChunkPlan.from_settings(UpsamplingSettings(**{**base, **changes}), LOW)


def snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    return float(20 * np.log10(np.linalg.norm(ref) / np.linalg.norm(ref - est)))


def leftover_temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp" in p.name]


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


def test_native_rate_output_is_sample_aligned(tmp_path):
    # the cubic spline passes through its knots: low-res sample k must come back at output k * factor
    x = to_pcm16(make_lowres(synth_speech(3.0, HIGH, seed=2), FACTOR))
    sf.write(tmp_path / "in.wav", x, LOW, subtype="PCM_16")
    upsample_file(tmp_path / "in.wav", tmp_path / "out.wav", cubic_upsampler(), short_chunks(), subtype="FLOAT")
    y, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    assert rate == HIGH and len(y) == FACTOR * len(x)
    np.testing.assert_allclose(y[::FACTOR], x, atol=1e-5)


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


def test_plan_outputs_mirrors_a_folder_and_refuses_to_overwrite_inputs(tmp_path):
    src = tmp_path / "in"
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    pairs, errors = plan_outputs([src], tmp_path / "out", HIGH)
    assert errors == []
    assert sorted(d.relative_to(tmp_path / "out").as_posix() for _, d in pairs) == ["a.wav", "sub/b.wav", "sub/deeper/c.wav"]
    pairs, errors = plan_outputs([src], src, HIGH)  # output folder = input folder: a.wav would be replaced
    assert pairs == [] and any("the output folder is this input folder itself" in e for e in errors)
    assert all(s.resolve() != d.resolve() for s, d in pairs)


# ---------------------------------------------------------------------------------------------------
# The command


@pytest.fixture
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _write(path: Path, seconds: float, rate: int = LOW, channels: int = 1, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = synth_speech(seconds, rate, seed=seed)
    sf.write(path, np.stack([x] * channels, 1) if channels > 1 else x, rate, subtype="PCM_16")
    return path


def test_one_file_default_output_beside_it(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "talk.wav", 1.5, rate=8000, channels=2)
    assert main(["upsample", str(src), "--checkpoint", str(checkpoint), "--device", "cpu"]) == 0
    out = tmp_path / "talk_16k.wav"  # named for the output rate
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (HIGH, 2, FACTOR * round(1.5 * LOW))
    printed = capsys.readouterr()
    assert "8000 Hz resampled to the model's input rate 4000 Hz" in printed.out + printed.err
    assert "upsample: 1 file(s) done (1 with the given model), 0 already done, 0 failed" in printed.out


def test_folder_is_mirrored_with_same_stems(tmp_path, checkpoint):
    src = tmp_path / "talks"
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        _write(src / rel, 0.5)
    (src / "notes.txt").write_text("not audio")
    out = tmp_path / "up"
    assert main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.wav", "sub/b.wav", "sub/deeper/c.wav"]
    assert all(sf.info(out / w).frames == FACTOR * 2000 for w in written)


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


def test_one_file_output_must_be_a_new_wav(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "-o", str(tmp_path / "a.flac"), "--checkpoint", str(checkpoint), "-q"]) == 2
    assert main(["upsample", str(src), "-o", str(src), "--checkpoint", str(checkpoint), "-q"]) == 2
    err = capsys.readouterr().err
    assert "a.flac: the output is a WAV file; name it .wav" in err and "would overwrite the input" in err
    assert sf.info(src).samplerate == LOW and not (tmp_path / "a.flac").exists()


def test_no_checkpoint_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(packaged, "PACKAGED_CHECKPOINT", tmp_path / "not_installed.pt")
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "--checkpoint", "packaged", "--settings", str(empty_settings(tmp_path / "none"))]) == 2
    assert "no checkpoint" in capsys.readouterr().err


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


def test_bf16_autocast_runs_and_stays_close(tmp_path):
    from audio_superres.models.checkpoint import load_model

    model, _ = load_model(save_tiny_checkpoint(tmp_path / "t.pt"))
    lr = to_pcm16(make_lowres(synth_speech(2.0, HIGH, seed=6), FACTOR))
    plan = short_chunks()
    full = upsample_array(lr, Upsampler(model, FACTOR, LOW), plan)
    half = upsample_array(lr, Upsampler(model, FACTOR, LOW, bf16=True), plan)
    assert half.dtype == np.float32 and half.shape == full.shape
    assert snr_db(full, half) > 30


@pytest.mark.parametrize("subtype", ["PCM_24", "FLOAT"])
def test_output_subtype_setting(tmp_path, checkpoint, subtype):
    src = _write(tmp_path / "a.wav", 0.5)
    out = tmp_path / "b.wav"
    assert main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "-q", "--set", f"upsampling.output_subtype={subtype}"]) == 0
    assert sf.info(out).subtype == subtype


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given when there is no GPU")
def test_cuda_without_gpu_is_a_one_line_error(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "--checkpoint", str(checkpoint), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "a_16k.wav").exists()
