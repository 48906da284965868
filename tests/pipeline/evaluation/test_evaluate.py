"""``pipeline evaluate`` (:mod:`audio_superres.pipeline.evaluation.evaluate`): scores against values
computed by hand, the samples the upsample command writes, the files it writes, the command on the
test split and on a folder, the perceptual columns."""

from __future__ import annotations

import json
import math

import librosa
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from torch import nn

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.evaluation import evaluate as evaluate_module
from audio_superres.pipeline.evaluation import perceptual
from audio_superres.pipeline.evaluation.baselines import upsample_sinc
from audio_superres.pipeline.evaluation.evaluate import SCORE_COLUMNS, evaluate, evaluate_files
from audio_superres.pipeline.evaluation.metrics import score
from audio_superres.pipeline.inference import ChunkPlan, Upsampler, upsample_file
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.settings import UpsamplingSettings

from ...conftest import tone, write_talk
from ..conftest import FACTOR, HIGH, LOW, cubic_upsampler, save_tiny_checkpoint, spliced_talks

needs_perceptual = pytest.mark.skipif(not all(perceptual.available().values()), reason=perceptual.MISSING_HINT)


class Silence(nn.Module):
    """A model that outputs zeros: its SNR is exactly 0 dB and its spectrum is the 1e-8 floor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], 1, x.shape[2] * FACTOR)


def _lsd_by_hand(y: np.ndarray, y_hat: np.ndarray, min_hz: float | None = None) -> float:
    # librosa's STFT (not the project's): n_fft 2048, hop 512, periodic Hann, centred with reflection
    def logpower(x):
        return np.log10(np.maximum(np.abs(librosa.stft(x.astype(np.float64), n_fft=2048, hop_length=512, window="hann", center=True, pad_mode="reflect")) ** 2, 1e-8))

    d = logpower(y) - logpower(y_hat)  # (freq, time)
    if min_hz is not None:
        d = d[np.fft.rfftfreq(2048, 1 / HIGH) > min_hz]
    return float(np.mean(np.sqrt(np.mean(d**2, axis=0))))


def test_scores_match_hand_computed_values(tmp_path):
    sig = tone(440, 1.0, HIGH) + tone(3000, 1.0, HIGH, amplitude=0.1)  # one tone below, one above 2 kHz
    pcm = np.round(sig * 32768).astype(np.int16)
    sf.write(tmp_path / "tones.wav", pcm, HIGH, subtype="PCM_16")
    frame = evaluate_files(Silence(), FACTOR, LOW, "soxr", [tmp_path / "tones.wav"], perceptual=False, quiet=True)
    assert list(frame["system"]) == ["model", "sinc", "cubic"] and list(frame.columns) == SCORE_COLUMNS
    assert frame["visqol"].isna().all() and frame["pesq_wb"].isna().all()  # not asked for
    rows = frame.set_index("system")

    y = pcm / 32768  # what the 16-bit file holds
    assert rows.loc["model", "snr"] == pytest.approx(0.0, abs=1e-9)  # ||y|| / ||y - 0|| = 1
    assert rows.loc["model", "lsd"] == pytest.approx(_lsd_by_hand(y, np.zeros_like(y)), rel=1e-6)
    assert rows.loc["model", "lsd_hf"] == pytest.approx(_lsd_by_hand(y, np.zeros_like(y), 2000), rel=1e-6)

    lr = np.round(make_lowres(y.astype(np.float32), FACTOR, "soxr") * 32768) / 32768
    sinc = np.round(upsample_sinc(lr, FACTOR, LOW) * 32768) / 32768
    assert rows.loc["sinc", "snr"] == pytest.approx(20 * np.log10(np.linalg.norm(y) / np.linalg.norm(y - sinc)), rel=1e-6)
    assert rows.loc["sinc", "lsd"] == pytest.approx(_lsd_by_hand(y, sinc), rel=1e-6)
    # the 3 kHz tone is gone from the low-res input and sinc cannot restore it: the error is that
    # tone, so SNR ~ 10 log10(total power / its power) = 10 log10((0.5**2 + 0.1**2) / 0.1**2) = 14.15 dB
    assert rows.loc["sinc", "snr"] == pytest.approx(10 * np.log10((0.5**2 + 0.1**2) / 0.1**2), abs=0.3)
    assert rows.loc["cubic", "seconds"] == pytest.approx(1.0)


def test_model_scores_are_those_of_the_upsample_command(tmp_path):
    # evaluate must score what `pipeline upsample` would write from the same low-res file
    write_talk(tmp_path / "hr.wav", 3.0, seed=5)
    hr, _ = sf.read(tmp_path / "hr.wav", dtype="float32")
    lr = to_pcm16(make_lowres(hr, FACTOR, "soxr"))
    sf.write(tmp_path / "lr.wav", lr, LOW, subtype="PCM_16")
    from audio_superres.models.checkpoint import load_model

    model, _ = load_model(save_tiny_checkpoint(tmp_path / "t.pt"))
    settings = UpsamplingSettings(chunk_seconds=1.0, overlap_seconds=0.1, context_seconds=0.1)
    up = Upsampler(model, FACTOR, LOW)
    upsample_file(tmp_path / "lr.wav", tmp_path / "out.wav", up, ChunkPlan.from_settings(settings, LOW))
    written, _ = sf.read(tmp_path / "out.wav", dtype="float32")
    frame = evaluate_files(up, FACTOR, LOW, "soxr", [tmp_path / "hr.wav"], settings=settings, perceptual=False, quiet=True)
    model_row = frame[frame["system"] == "model"].iloc[0]
    expected = score(hr, written, HIGH, LOW)
    assert model_row[["snr", "lsd", "lsd_hf"]].to_dict() == pytest.approx(expected, rel=1e-9)


def test_evaluate_writes_scores_summary_and_samples(tmp_path, capsys):
    paths = [write_talk(tmp_path / "in" / f"t{i}.flac", 2.0, seed=i) for i in range(3)]
    up = Upsampler(Silence(), FACTOR, LOW)
    result = evaluate(up, "soxr", paths, tmp_path / "eval", figures=2, excerpt_seconds=1.0, perceptual=False, about={"checkpoint": "x.pt"})
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert len(scores) == 9 and set(scores["system"]) == {"model", "sinc", "cubic"}
    table = (tmp_path / "eval" / "summary.md").read_text()
    assert table.splitlines()[0].startswith("| system | files | SNR (dB) | LSD | LSD-HF |")
    assert "| model | 3 | 0.00 |" in table  # silence: exactly 0 dB on every file
    assert table in capsys.readouterr().out
    meta = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert meta["checkpoint"] == "x.pt" and meta["files"] == 3 and len(meta["samples"]) == 2
    for sample in meta["samples"]:
        folder = tmp_path / "eval" / sample["folder"]
        assert sf.info(folder / "highres.wav").samplerate == HIGH and sf.info(folder / "lowres.wav").samplerate == LOW
        assert sf.info(folder / "model.wav").frames == HIGH  # the 1 s excerpt
        assert (folder / "spectrogram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.summary.loc["sinc", "lsd_vs_sinc"] == pytest.approx(1.0)


def test_cli_on_the_test_split_and_on_a_folder_with_a_bad_file(tmp_path, capsys):
    talks, _ = spliced_talks(tmp_path, 6.0)
    test_talks = set(pd.read_csv(tmp_path / "clips" / "splits" / "test.csv")["source"])
    ckpt = save_tiny_checkpoint(tmp_path / "t.pt")
    sets = ["--set", f"data.input_dir={talks}", "--set", f"data.output_dir={tmp_path / 'clips'}", "--set", "data.trim_seconds=1.0"]
    assert main(["evaluate", "--checkpoint", str(ckpt), "-o", str(tmp_path / "eval"), "--figures", "1", "--no-perceptual", "-q", *sets]) == 0
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert set(scores["file"]) == test_talks
    assert np.allclose(scores["seconds"], 4.0)  # whole 6 s talks, 1 s trimmed from each end
    assert list(scores.columns) == SCORE_COLUMNS and scores["visqol"].isna().all()  # --no-perceptual

    (talks / "broken.wav").write_bytes(b"RIFF" + bytes(100))
    assert main(["evaluate", "--checkpoint", str(ckpt), "--input", str(talks), "-o", str(tmp_path / "eval2"), "--figures", "0", "--no-perceptual", "-q"]) == 1
    assert any(line.startswith("error:") and "broken.wav" in line for line in capsys.readouterr().err.splitlines())
    assert pd.read_csv(tmp_path / "eval2" / "scores.csv")["file"].nunique() == 5


@needs_perceptual
def test_perceptual_columns_per_file_and_in_the_summary(tmp_path, capsys):
    paths = [write_talk(tmp_path / "in" / f"t{i}.flac", 2.0, seed=i) for i in range(2)]
    result = evaluate(Upsampler(Silence(), FACTOR, LOW), "soxr", paths, tmp_path / "eval", figures=0)
    out = capsys.readouterr()
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert list(scores.columns) == SCORE_COLUMNS
    rows = scores.set_index("system")
    # both baselines scored on every file, on the MOS scales; a silent model cannot be scored (NaN)
    for system in ("sinc", "cubic"):
        assert rows.loc[system, "visqol"].between(1, 5).all() and rows.loc[system, "pesq_wb"].between(1, 4.7).all()
    assert rows.loc["model", "visqol"].isna().all() and rows.loc["model", "pesq_wb"].isna().all()
    table = (tmp_path / "eval" / "summary.md").read_text()
    head, _, *lines = table.splitlines()
    assert head.endswith("| LSD / sinc | ViSQOL | PESQ-WB |")
    assert lines[0].startswith("| model |") and lines[0].endswith("| - | - |")
    sinc = result.summary.loc["sinc"]
    assert f"| {sinc['visqol']:.2f} | {sinc['pesq_wb']:.2f} |" in lines[1] and sinc["visqol_files"] == 2
    assert f"quality mapping {perceptual.visqol_mapping()}" in table and "middle 60 s" in table
    assert table in out.out and "note:" not in out.err
    meta = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert meta["perceptual"]["visqol_mapping"] == perceptual.visqol_mapping() and meta["perceptual"]["scored"]


def test_perceptual_mean_counts_the_files_scored():
    scores = pd.DataFrame([
        {"file": f, "seconds": 1.0, "system": s, "snr": 10.0, "lsd": 1.0, "lsd_hf": 2.0, "visqol": v, "pesq_wb": 2.0}
        for f, v in (("a", 3.0), ("b", math.nan), ("c", 4.0)) for s in ("model", "sinc", "cubic")
    ])  # fmt: skip
    summary = evaluate_module.summarize(scores)
    assert summary.loc["model", "visqol"] == pytest.approx(3.5) and summary.loc["model", "visqol_files"] == 2
    assert "| 3.50 (2 of 3) | 2.00 |" in evaluate_module.markdown_table(summary)


def test_without_the_packages_evaluate_says_how_to_get_them_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(perceptual, "available", lambda: {"visqol": False, "pesq_wb": False})
    paths = [write_talk(tmp_path / "in" / f"t{i}.flac", 1.0, seed=i) for i in range(2)]
    evaluate(cubic_upsampler(), "soxr", paths, tmp_path / "eval", figures=0)
    out = capsys.readouterr()
    notes = [line for line in out.err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {perceptual.MISSING_HINT}"]
    assert 'pip install -e ".[metrics]"' in notes[0]
    assert pd.read_csv(tmp_path / "eval" / "scores.csv")["visqol"].isna().all()
    assert "ViSQOL" not in (tmp_path / "eval" / "summary.md").read_text()  # no column of dashes


def test_perceptual_scores_see_the_middle_of_long_files(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(perceptual, "available", lambda: {"visqol": True, "pesq_wb": True})
    monkeypatch.setattr(perceptual, "_visqol_moslqo", lambda ref, deg: seen.append(len(ref)) or 3.0)
    monkeypatch.setattr(perceptual, "_pesq_wb", lambda ref, deg: 2.0)
    write_talk(tmp_path / "long.wav", 3.0)
    frame = evaluate_files(cubic_upsampler(), FACTOR, LOW, "soxr", [tmp_path / "long.wav"], perceptual_seconds=1.0, quiet=True)
    assert seen == [HIGH] * 3 and (frame["visqol"] == 3.0).all() and (frame["pesq_wb"] == 2.0).all()
    seen.clear()
    evaluate_files(cubic_upsampler(), FACTOR, LOW, "soxr", [tmp_path / "long.wav"], perceptual_seconds=0, quiet=True)
    assert seen == [3 * HIGH] * 3  # 0: whole files
