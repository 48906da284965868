import fcntl
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audio_superres.pipeline.cli import main
from audio_superres.preprocessing import splice as splice_module
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.splice import MANIFEST_COLUMNS, SpliceError, clip_starts, find_sources, splice

from ..conftest import data_settings, empty_settings, tone, write_talk


@pytest.fixture
def corpus(tmp_path):
    talks = tmp_path / "talks"
    for i, seconds in enumerate([10.0, 9.0, 7.5]):
        write_talk(talks / f"talk{i}.flac", seconds, seed=i)
    return talks


def test_clip_arithmetic():
    s = data_settings("in", "out", trim_seconds=1.0, clip_seconds=2.0)
    assert list(clip_starts(10 * 16000, s)) == [16000, 48000, 80000, 112000]  # 8 s after trimming: 4 clips
    assert list(clip_starts(int(3.99 * 16000), s)) == []  # 1.99 s left: no clip
    assert len(clip_starts(4 * 16000, s)) == 1
    s = data_settings("in", "out", trim_seconds=0.0, clip_seconds=2.0, hop_seconds=0.5)
    assert list(clip_starts(3 * 16000, s)) == [0, 8000, 16000]


def test_clips_twins_and_manifest(corpus, tmp_path):
    out = tmp_path / "clips"
    summary = splice(data_settings(corpus, out), quiet=True)
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert (summary.done, summary.skipped, summary.failed) == (3, 0, 0)
    assert manifest.groupby("talk").size().to_dict() == {"talk0": 4, "talk1": 3, "talk2": 2}
    assert summary.clips == len(manifest) == 9
    for row in manifest.itertuples():
        hr, hr_rate = sf.read(str(out / row.hr_path), dtype="float32")
        lr, lr_rate = sf.read(str(out / row.lr_path), dtype="float32")
        assert (hr_rate, len(hr), lr_rate, len(lr)) == (16000, 32000, 4000, 8000)
        assert sf.info(str(out / row.hr_path)).subtype == "PCM_16"
        np.testing.assert_allclose(lr, make_lowres(hr, 4, "soxr", 16000), atol=1.01 / 32768)
    # start_s says where the clip came from in the talk
    source, _ = sf.read(str(corpus / "talk0.flac"), dtype="float32")
    row = manifest[manifest.talk == "talk0"].iloc[2]
    hr, _ = sf.read(str(out / row.hr_path), dtype="float32")
    start = int(row.start_s * 16000)
    assert start == 16000 + 2 * 32000
    np.testing.assert_array_equal(hr, source[start : start + 32000])
    assert not (out / "failures.csv").exists()


def test_quiet_clips_dropped_silent_and_short_talks_skipped(tmp_path):
    talks = tmp_path / "talks"
    x = write_talk(talks / "mixed.wav", 8.0, seed=3)
    audio, _ = sf.read(str(x), dtype="float32")
    audio[3 * 16000 : 5 * 16000] = 0.0  # clip 1 (3-5 s) becomes silent
    sf.write(str(x), audio, 16000, subtype="PCM_16")
    sf.write(str(talks / "silent.wav"), np.zeros(8 * 16000, np.float32), 16000)
    write_talk(talks / "short.wav", 3.0, seed=4)
    summary = splice(data_settings(talks, tmp_path / "clips"), quiet=True)
    manifest = pd.read_csv(tmp_path / "clips" / "manifest.csv")
    assert list(manifest.clip_id) == ["mixed_00000", "mixed_00002"]
    assert (summary.done, summary.skipped, summary.failed) == (1, 2, 0)
    reasons = dict(summary.skips)
    assert "silent" in reasons[str(talks / "silent.wav")] and "too short" in reasons[str(talks / "short.wav")]


@pytest.mark.parametrize("method", ["soxr", "decimate", "subsample", "butterworth"])
def test_lowres_method_recorded(corpus, tmp_path, method):
    out = tmp_path / method
    splice(data_settings(corpus, out, lowres=method), quiet=True)
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest.lowres) == {method}
    row = manifest.iloc[0]
    hr, _ = sf.read(str(out / row.hr_path), dtype="float32")
    lr, _ = sf.read(str(out / row.lr_path), dtype="float32")
    np.testing.assert_allclose(lr, make_lowres(hr, 4, method, 16000), atol=1.01 / 32768)


def test_other_rates_and_channels_resampled(tmp_path):
    talks = tmp_path / "talks"
    talks.mkdir()
    stereo = np.stack([tone(300, 6.0, 44100), tone(300, 6.0, 44100)], axis=1)
    sf.write(str(talks / "cd.wav"), stereo, 44100, subtype="PCM_24")
    splice(data_settings(talks, tmp_path / "clips"), quiet=True)
    row = pd.read_csv(tmp_path / "clips" / "manifest.csv").iloc[0]
    hr, rate = sf.read(str(tmp_path / "clips" / row.hr_path), dtype="float32")
    assert rate == 16000 and len(hr) == 32000 and hr.ndim == 1
    assert abs(np.abs(hr).max() - 0.5) < 0.01


def test_bad_files_reported_others_processed(corpus, tmp_path, capsys):
    (corpus / "zero.wav").write_bytes(b"")
    (corpus / "junk.flac").write_bytes(os.urandom(3000))
    (corpus / "folder.wav").mkdir()
    out = tmp_path / "clips"
    code = main(["splice", "--settings", str(empty_settings(tmp_path / "none")), "--set", f"data.input_dir={corpus}", "--set", f"data.output_dir={out}", "--set", "data.trim_seconds=1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: {corpus / 'zero.wav'}: empty file (0 bytes)" in err
    assert f"error: {corpus / 'junk.flac'}: not a readable audio file" in err
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(failures.path) == sorted([str(corpus / "junk.flac"), str(corpus / "zero.wav")])
    assert set(pd.read_csv(out / "manifest.csv").talk) == {"talk0", "talk1", "talk2"}


def test_resume_after_crash_gives_the_same_result(corpus, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    splice(data_settings(corpus, reference), quiet=True)

    out = tmp_path / "clips"
    real_write = splice_module.write_audio
    calls = {"n": 0}

    def dying_write(path, x, rate, *a, **k):
        calls["n"] += 1
        if calls["n"] == 11:  # in the middle of the second talk (the first writes 8 files), after a temporary file was started
            tmp = path.with_name(f".{path.stem}.tmp99999{path.suffix}")
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
        return real_write(path, x, rate, *a, **k)

    monkeypatch.setattr(splice_module, "write_audio", dying_write)
    with pytest.raises(KeyboardInterrupt):
        splice(data_settings(corpus, out), quiet=True)
    assert not (out / "manifest.csv").exists()
    assert sorted(p.stem for p in (out / ".done").iterdir()) == ["talk0"]
    monkeypatch.setattr(splice_module, "write_audio", real_write)

    summary = splice(data_settings(corpus, out), quiet=True)
    assert summary.resumed == 1 and summary.done == 3
    assert (out / "manifest.csv").read_text() == (reference / "manifest.csv").read_text()
    for rel in pd.read_csv(out / "manifest.csv").hr_path:
        assert (out / rel).read_bytes() == (reference / rel).read_bytes()
    assert not list(out.rglob(".*.tmp*"))
    # a third run reads nothing again
    assert splice(data_settings(corpus, out), quiet=True).resumed == 3


def test_resume_removes_what_workers_orphaned_by_a_killed_run_left(corpus, tmp_path):
    # kill -9 of splice leaves its pool's workers running a while (they are not holding the folder's
    # lock): their half-written clips carry a live pid, which the resumed run, holding the lock, removes
    out = tmp_path / "clips"
    splice(data_settings(corpus, out), quiet=True)
    (out / ".done" / "talk2.json").unlink()  # as if killed before talk2 was recorded
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        done_talk = out / "hr" / "talk0" / f".talk0_00001.tmp{orphan.pid}.flac"  # a talk the rerun skips
        redone_talk = out / "lr" / "talk2" / f".talk2_00000.tmp{orphan.pid}.flac"  # a talk the rerun redoes
        for tmp in (done_talk, redone_talk):
            tmp.write_bytes(b"half")
        summary = splice(data_settings(corpus, out), quiet=True)
    finally:
        orphan.kill()
    assert summary.resumed == 2 and summary.done == 3
    assert not list(out.rglob(".*.tmp*"))


def test_changed_settings_redo_the_talks(corpus, tmp_path):
    out = tmp_path / "clips"
    splice(data_settings(corpus, out), quiet=True)
    summary = splice(data_settings(corpus, out, lowres="subsample"), quiet=True)
    assert summary.resumed == 0
    assert set(pd.read_csv(out / "manifest.csv").lowres) == {"subsample"}


def test_parallel_equals_serial(corpus, tmp_path):
    splice(data_settings(corpus, tmp_path / "a", n_jobs=1), quiet=True)
    splice(data_settings(corpus, tmp_path / "b", n_jobs=2), quiet=True)
    assert (tmp_path / "a" / "manifest.csv").read_text() == (tmp_path / "b" / "manifest.csv").read_text()


def test_talk_from_parent_and_links_read_once(tmp_path):
    root = tmp_path / "corpus"
    write_talk(root / "data" / "sph" / "ted1.wav", 5.0, seed=1)
    write_talk(root / "spk_a" / "u1.wav", 5.0, seed=2)
    write_talk(root / "spk_a" / "u2.wav", 5.0, seed=3)
    (root / "legacy" / "train" / "sph").mkdir(parents=True)
    os.symlink(root / "data" / "sph" / "ted1.wav", root / "legacy" / "train" / "sph" / "ted1.wav")
    by_file = find_sources(root, "file")
    assert [s.rel for s in by_file] == ["data/sph/ted1.wav", "spk_a/u1.wav", "spk_a/u2.wav"]
    by_parent = find_sources(root, "parent")
    assert [s.talk for s in by_parent] == ["sph", "spk_a", "spk_a"]
    assert len({s.key for s in by_parent}) == 3


def test_names_with_spaces_and_non_ascii(tmp_path):
    talks = tmp_path / "talks"
    write_talk(talks / "Zoë talk 1.flac", 6.0)
    splice(data_settings(talks, tmp_path / "out clips"), quiet=True)
    manifest = pd.read_csv(tmp_path / "out clips" / "manifest.csv")
    assert set(manifest.talk) == {"Zoë talk 1"} and all((tmp_path / "out clips" / p).is_file() for p in manifest.hr_path)


def test_output_inside_input_is_not_read_back(corpus):
    out = corpus / "clips"
    splice(data_settings(corpus, out), quiet=True)
    assert splice(data_settings(corpus, out), quiet=True).done == 3


def test_empty_input_folder_and_concurrent_run_refused(tmp_path, corpus):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpliceError, match="no audio files"):
        splice(data_settings(tmp_path / "empty", tmp_path / "o"), quiet=True)
    with pytest.raises(SpliceError, match="input folder does not exist"):
        splice(data_settings(tmp_path / "missing", tmp_path / "o"), quiet=True)
    out = tmp_path / "busy"
    out.mkdir()
    with open(out / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SpliceError, match="another splice is writing to this folder"):
            splice(data_settings(corpus, out), quiet=True)


def test_unwritable_output_refused_before_work(tmp_path, corpus):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpliceError, match="output folder cannot be written"):
        splice(data_settings(corpus, blocker / "clips"), quiet=True)


def test_speakers_as_talks_in_parallel(tmp_path):
    root = tmp_path / "vctk"
    for spk in ("p225", "p226"):
        for u in range(4):
            write_talk(root / spk / f"{spk}_{u:03d}.wav", 2.5, seed=u)
    out = tmp_path / "clips"
    summary = splice(data_settings(root, out, talk_from="parent", trim_seconds=0.0, n_jobs=2), quiet=True)
    manifest = pd.read_csv(out / "manifest.csv")
    assert summary.done == 8 and summary.failed == 0
    assert manifest.groupby("talk").size().to_dict() == {"p225": 4, "p226": 4}
    assert all(c.startswith(f"{t}__") for c, t in zip(manifest.clip_id, manifest.talk))
    assert all((out / p).is_file() for p in manifest.hr_path)


def test_a_recording_narrower_than_the_clips_band_is_refused(tmp_path):
    import soxr

    from audio_superres.preprocessing.synth import synth_speech

    talks = tmp_path / "talks"
    write_talk(talks / "wide.wav", 4.0, seed=1)
    narrow = soxr.resample(soxr.resample(synth_speech(4.0, 16000, seed=2), 16000, 4000), 4000, 16000)  # content to ~1.9 kHz
    sf.write(str(talks / "narrow.wav"), narrow, 16000)
    summary = splice(data_settings(talks, tmp_path / "clips"), quiet=True)
    assert summary.failed == 1
    failures = pd.read_csv(tmp_path / "clips" / "failures.csv")
    assert list(failures["path"].map(lambda p: Path(p).name)) == ["narrow.wav"]
    assert "below data.min_bandwidth_hz (6800 Hz): it would teach an empty high band" in failures["error"][0]
    manifest = pd.read_csv(tmp_path / "clips" / "manifest.csv")
    assert set(manifest["talk"]) == {"wide"}
    # the threshold is a setting: 0 turns the check off
    summary = splice(data_settings(talks, tmp_path / "clips2", min_bandwidth_hz=0), quiet=True)
    assert summary.failed == 0


def test_a_broken_link_is_listed_as_failed_and_the_other_talks_spliced(tmp_path):
    # a link to itself once aborted the whole splice (exit 2) before any good talk was read
    write_talk(tmp_path / "in" / "talk0.flac", 6.0)
    os.symlink("loop.wav", tmp_path / "in" / "loop.wav")
    summary = splice(data_settings(tmp_path / "in", tmp_path / "clips"), quiet=True)
    assert (summary.done, summary.failed) == (1, 1) and summary.clips == 2
    failures = pd.read_csv(tmp_path / "clips" / "failures.csv")
    assert list(failures.path) == [str(tmp_path / "in" / "loop.wav")]
    assert failures.error[0].startswith("a symbolic link that loops or leads nowhere")


def test_a_talk_whose_name_is_not_utf8_is_spliced_then_split(tmp_path):
    # soundfile refused the name (UnicodeEncodeError), then split could not read the manifest holding it
    from audio_superres.preprocessing.split import split
    from audio_superres.settings import Splits

    for i in range(3):
        write_talk(tmp_path / "in" / f"talk{i}.flac", 6.0, seed=i)
    os.rename(bytes(tmp_path / "in" / "talk0.flac"), bytes(tmp_path / "in") + b"/talk_\xff.flac")
    summary = splice(data_settings(tmp_path / "in", tmp_path / "clips"), quiet=True)
    assert (summary.done, summary.failed, summary.clips) == (3, 0, 6)
    paths = split(tmp_path / "clips", Splits(train=0.34, val=0.33, test=0.33), quiet=True)
    talks = set().union(*(pd.read_csv(p, encoding_errors="surrogateescape").talk for p in paths.values()))
    assert talks == {"talk_\udcff", "talk1", "talk2"}
