"""Reliability and security of the stages as a user runs them: bad input files, ``kill -9`` and a
second run at once, a full disk, checkpoints carrying code, and broken settings.

Every test asserts the exit status, the one-line message and what is on disk afterwards: no
temporary left under a final name, complete outputs. Faults use real processes
(``python -m audio_superres.pipeline.cli`` killed with SIGKILL mid-work) and, where the machine allows a user
namespace (``unshare -rm``), a real size-limited file system (tmpfs); a full disk is also injected
in-process (ENOSPC), which runs everywhere.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
import torch

import audio_superres.models.checkpoint as checkpoint_module
from audio_superres.models.checkpoint import read_checkpoint
from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.splice import splice
from audio_superres.preprocessing.synth import synth_speech

from .conftest import data_settings, empty_settings, write_talk

REPO = Path(__file__).resolve().parents[1]
# one thread in the child processes as here: the same arithmetic, so a resumed run can be compared
# bit for bit, and no OpenMP threads spinning against each other on a small machine
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TRAIN = ["model.width=4", "model.depth=2", "training.batch_size=4", "training.num_workers=0", "training.warmup_steps=2", "training.epochs=6", "training.device=cpu"]
HIGH, FACTOR, LOW = 16000, 4, 4000


pytestmark = pytest.mark.usefixtures("one_thread")


# --- helpers ------------------------------------------------------------------------------------


def sets(*overrides: str) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def no_settings(tmp: Path) -> list[str]:
    return ["--settings", str(empty_settings(tmp.parent / f"{tmp.name}_no_settings"))]


def temporaries(folder: Path) -> list[Path]:
    """Files written under a temporary name (preprocessing.audio.temporary_name) still lying about."""
    return sorted(p for p in folder.rglob("*") if ".tmp" in p.name)


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "audio_superres.pipeline.cli", *args], cwd=REPO, env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 120.0) -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ended first (the fault was not injected)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}; nothing was killed\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {timeout:g} s")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the lock, which holds nothing) by relative path, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def clip_files(folder: Path) -> dict[str, bytes]:
    return {k: v for k, v in tree(folder).items() if k.startswith(("hr/", "lr/"))}


def _tmpfs_works() -> bool:
    if shutil.which("unshare") is None or sys.platform != "linux":
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", 'd=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs "$d" && umount "$d"; s=$?; rmdir "$d"; exit $s'], capture_output=True)
    return probe.returncode == 0


TMPFS = _tmpfs_works()


def run_on_full_disk(mount: Path, size_kb: int, *args: str) -> tuple[int, str, Path]:
    """Run ``pipeline ARGS`` with a ``size_kb`` tmpfs mounted on ``mount`` (in a user and mount
    namespace: no root needed, gone when the command ends). Returns the exit status, stderr, and a
    copy of what was left on the small disk (``mount`` itself is empty again afterwards)."""
    mount.mkdir(parents=True)
    left = mount.with_name(mount.name + " afterwards")
    left.mkdir()
    script = 'mount -t tmpfs -o size="$1"k tmpfs "$2" || exit 99; m=$2; c=$3; shift 3; "$@"; rc=$?; cp -a "$m"/. "$c"/ || exit 98; exit $rc'
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(size_kb), str(mount), str(left), sys.executable, "-m", "audio_superres.pipeline.cli", *args],
        cwd=REPO,
        env=CHILD_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode not in (98, 99), done.stderr
    return done.returncode, done.stderr, left


# --- shared data --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talks(tmp_path_factory) -> Path:
    """Eight 6 s talks: enough work for splice that a kill lands in the middle of it."""
    root = tmp_path_factory.mktemp("talks")
    for i in range(8):
        write_talk(root / f"talk {i}.flac", 6.0, seed=i)
    return root


def splice_args(talks: Path, out: Path) -> list[str]:
    return sets(f"data.input_dir={talks}", f"data.output_dir={out}", "data.trim_seconds=1", "data.clip_seconds=0.5", "data.n_jobs=1")


@pytest.fixture(scope="module")
def reference_clips(talks, tmp_path_factory) -> Path:
    """What an uninterrupted splice of ``talks`` writes."""
    out = tmp_path_factory.mktemp("reference") / "clips"
    splice(data_settings(talks, out, clip_seconds=0.5), quiet=True)
    return out


def train_args(clips: Path, run_dir: Path, *more: str) -> list[str]:
    return ["--settings", str(empty_settings(run_dir.parent.parent / f"{run_dir.parent.name}_no_settings")), *sets(f"data.output_dir={clips}", f"training.run_dir={run_dir}", *TRAIN, *more), "--quiet"]


@pytest.fixture(scope="module")
def trained(clips, tmp_path_factory) -> Path:
    """An uninterrupted tiny training run (its best.pt is the checkpoint of the upsample tests)."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", *train_args(clips, run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def checkpoint(trained) -> Path:
    return trained / "best.pt"


# --- bad inputs ---------------------------------------------------------------------------------

GOOD = ["u8.wav", "pcm24.wav", "float32.wav", "rate96k.wav", "stereo.wav", "six channels.wav", "Zoë talk ü.wav"]
BAD = {  # name -> what the error line must say
    "zero.wav": "empty file (0 bytes)",
    "random.wav": "not a readable audio file",
    "truncated.wav": "truncated: header promises",
    "compressed.sph": "shorten-compressed NIST SPHERE",
    "nan.wav": "holds NaN or infinite samples",
    "inf.wav": "holds NaN or infinite samples",
}
SILENT, SHORT = "silent.wav", "short.wav"  # splice skips them; upsample restores them like any file


def make_bad_corpus(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every kind of input of the issue in one folder; returns (rate, frames, channels) of the
    readable ones."""
    root.mkdir(parents=True)
    x = synth_speech(4.0, HIGH, seed=3)
    written = {}

    def wav(name: str, data: np.ndarray, rate: int = HIGH, subtype: str = "PCM_16") -> None:
        sf.write(root / name, data, rate, subtype=subtype)
        data2 = data.reshape(len(data), -1)
        written[name] = (rate, len(data2), data2.shape[1])

    wav("u8.wav", x, subtype="PCM_U8")
    wav("pcm24.wav", x, subtype="PCM_24")
    wav("float32.wav", x, subtype="FLOAT")
    wav("rate96k.wav", soxr.resample(x, HIGH, 96000).astype(np.float32), rate=96000)
    wav("stereo.wav", np.stack([x, 0.5 * x], 1))
    wav("six channels.wav", np.stack([x * (c + 1) / 7 for c in range(6)], 1))
    wav("Zoë talk ü.wav", x)
    wav(SILENT, np.zeros(4 * HIGH, np.float32))
    wav(SHORT, x[: HIGH // 2])  # 0.5 s: less than the 1 s trimmed from each end
    (root / "zero.wav").write_bytes(b"")
    (root / "random.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    sf.write(root / "truncated.wav", x, HIGH)
    whole = (root / "truncated.wav").read_bytes()
    (root / "truncated.wav").write_bytes(whole[: len(whole) // 2])  # the header still claims it all
    header = b"NIST_1A\n   1024\nsample_count -i 64000\nsample_rate -i 16000\nchannel_count -i 1\nsample_coding -s26 pcm,embedded-shorten-v2.00\nend_head\n"
    (root / "compressed.sph").write_bytes(header.ljust(1024, b" ") + np.random.default_rng(1).bytes(4000))
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        y = x.copy()
        y[HIGH + 17] = value
        sf.write(root / name, y, HIGH, subtype="FLOAT")
    (root / "folder.wav").mkdir()  # a folder with an audio name: not a file to read
    return written


def test_bad_inputs_through_splice(tmp_path, capsys):
    src, out = tmp_path / "in put", tmp_path / "clips"
    make_bad_corpus(src)
    code = main(["splice", *no_settings(tmp_path), *splice_args(src, out)])
    err = capsys.readouterr().err
    assert code == 1
    errors = error_lines(err)
    for name, problem in BAD.items():
        assert sum(line.startswith(f"error: {src / name}: {problem}") for line in errors) == 1, (name, errors)
    assert len(errors) == len(BAD) + 1  # one per file, then the count
    assert f"{len(BAD)} file(s) could not be read" in errors[-1]
    assert f"skipped: {src / SILENT}: silent" in err and f"skipped: {src / SHORT}: too short" in err

    failures = pd.read_csv(out / "failures.csv")
    assert sorted(failures.path) == sorted(str(src / n) for n in BAD)
    manifest = pd.read_csv(out / "manifest.csv")
    assert sorted(manifest.source.unique()) == sorted(GOOD)
    for name in GOOD:  # 4 s less 1 s trimmed from each end: four 0.5 s clips each
        assert (manifest.source == name).sum() == 4, name
    for rel in [*manifest.hr_path, *manifest.lr_path]:
        info = sf.info(out / rel)
        assert info.channels == 1 and info.frames == (8000 if rel.startswith("hr/") else 2000)
    assert temporaries(out) == []


def test_bad_inputs_through_upsample(tmp_path, checkpoint, capsys):
    src, out = tmp_path / "in put", tmp_path / "restored"
    readable = make_bad_corpus(src)
    code = main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet", *no_settings(tmp_path)])
    errors = error_lines(capsys.readouterr().err)
    assert code == 1
    assert len(errors) == len(BAD)
    for name, problem in BAD.items():
        assert sum(line.startswith(f"error: {src / name}: ") and problem in line for line in errors) == 1, (name, errors)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([*GOOD, SILENT, SHORT])
    for name in written:
        rate, frames, channels = readable[name]
        info = sf.info(out / name)
        assert (info.samplerate, info.channels, info.frames) == (HIGH, channels, FACTOR * round(frames * LOW / rate)), name
    assert temporaries(out) == []


def test_empty_input_folder_is_a_clear_error(tmp_path, checkpoint, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["splice", *no_settings(tmp_path), *splice_args(empty, tmp_path / "clips")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {empty}: no audio files (.wav, .flac, .sph, .ogg, .mp3, .opus, .aif, .aiff) found in this folder"]
    assert not (tmp_path / "clips").exists()
    for args in ([str(empty)], [str(empty), "-o", str(tmp_path / "up")], [str(tmp_path / "talk.wav")]):
        assert main(["upsample", *args, "--checkpoint", str(checkpoint), "-q", *no_settings(tmp_path)]) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert line.startswith(f"error: {Path(args[0])}: ") and ("no audio files" in line or "no such file" in line)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_unwritable_output_is_refused_before_any_work(tmp_path, checkpoint, capsys):
    talks = tmp_path / "talks"
    write_talk(talks / "a.wav", 3.0)
    write_talk(talks / "b.wav", 3.0, seed=1)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should go")
    before = tree(tmp_path)

    assert main(["splice", *no_settings(tmp_path), *splice_args(talks, blocker / "clips")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {blocker / 'clips'}: output folder cannot be written (Not a directory)"]
    for args in ([str(talks), "-o", str(blocker / "up")], [str(talks / "a.wav"), "-o", str(blocker / "up" / "a.wav")], [str(talks / "a.wav"), str(talks / "b.wav"), "-o", str(blocker)]):
        assert main(["upsample", *args, "--checkpoint", str(checkpoint), *no_settings(tmp_path)]) == 2
        printed = capsys.readouterr()
        assert error_lines(printed.err) == [f"error: {Path(args[-1]).parent if args[-1].endswith('.wav') else Path(args[-1])}: output folder cannot be created: {blocker} is a file"]
        assert "upsample:" not in printed.out + printed.err  # no progress, no summary: nothing was started
    assert tree(tmp_path) == before


# --- faults: kill -9, two runs at once, a full disk ---------------------------------------------


def test_splice_killed_mid_talk_then_rerun_equals_an_uninterrupted_run(talks, reference_clips, tmp_path):
    out = tmp_path / "clips"
    args = ["splice", *no_settings(tmp_path), *splice_args(talks, out), "--quiet"]

    def a_talk_half_done() -> bool:  # clips of a talk whose completion record is not written yet
        done = {p.stem for p in (out / ".done").glob("*.json")} if (out / ".done").is_dir() else set()
        return bool(done) and any(d.name not in done and any(d.iterdir()) for d in (out / "hr").iterdir())

    kill_when(child(*args), a_talk_half_done, "a talk was half spliced")
    assert not (out / "manifest.csv").exists()
    recorded = {p.stem for p in (out / ".done").glob("*.json")}
    assert 0 < len(recorded) < 8

    again = child(*args[:-1])  # the same command (but for --quiet, to see its summary)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert error_lines(stderr) == []
    # the talks recorded before the kill are not read again; the half-done one is redone whole
    assert f"splice: 8 talks done ({len(recorded)} already complete), 0 skipped, 0 failed; 64 clips written" in stdout
    assert (out / "manifest.csv").read_text() == (reference_clips / "manifest.csv").read_text()
    assert clip_files(out) == clip_files(reference_clips)
    assert temporaries(out) == []


def test_second_splice_on_the_same_folder_is_refused(talks, reference_clips, tmp_path, capsys):
    out = tmp_path / "clips"
    args = ["splice", *no_settings(tmp_path), *splice_args(talks, out), "--quiet"]
    first = child(*args)
    deadline = time.monotonic() + 120
    while not (out / "hr").is_dir() or not any((out / "hr").iterdir()):  # the first one holds the lock and is writing
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    code = main(args)
    still_running = first.poll() is None
    assert code == 2 and still_running
    assert error_lines(capsys.readouterr().err) == [f"error: {out}: another splice is writing to this folder (lock {out / '.lock'} is held); wait for it or pick another data.output_dir"]
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert (out / "manifest.csv").read_text() == (reference_clips / "manifest.csv").read_text()
    assert clip_files(out) == clip_files(reference_clips)
    assert temporaries(out) == []
    # the lock goes with its holder: the next run goes ahead, and finds every talk done
    assert main(args[:-1]) == 0
    assert "splice: 8 talks done (8 already complete)" in capsys.readouterr().out


def test_upsample_killed_mid_file_leaves_no_output_under_its_name_then_completes(tmp_path, checkpoint):
    src = tmp_path / "long"
    for i in range(2):
        write_talk(src / f"talk{i}.wav", 40.0, seed=i)
    reference = tmp_path / "reference"
    small_chunks = sets("upsampling.chunk_seconds=1", "upsampling.overlap_seconds=0.1", "upsampling.batch_size=1")
    args = ["upsample", str(src), "--checkpoint", str(checkpoint), "--quiet", *no_settings(tmp_path), *small_chunks]
    assert main([*args, "-o", str(reference)]) == 0

    out = tmp_path / "out"

    def half_written() -> bool:
        try:
            return any(p.stat().st_size > 50_000 for p in temporaries(out))
        except FileNotFoundError:  # renamed into place meanwhile
            return False

    kill_when(child(*args, "-o", str(out)), half_written, "an output was half written")
    (half,) = temporaries(out)
    final = out / (half.name[1:].split(".tmp")[0] + ".wav")
    assert not final.exists()  # the half-written file never has the final name

    assert main([*args, "-o", str(out)]) == 0  # the same command again
    assert tree(out) == tree(reference)  # the killed run's temporary is gone too


def test_train_killed_then_resumed_from_last_equals_an_uninterrupted_run(clips, trained, tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["train", *train_args(clips, run_dir)]
    kill_when(child(*args), lambda: (run_dir / "last.pt").is_file(), "the first checkpoint was written")
    final = read_checkpoint(trained / "last.pt")
    assert 0 < read_checkpoint(run_dir / "last.pt")["step"] < final["step"]

    assert main(args) == 2  # the same command again will not overwrite the run...
    assert error_lines(capsys.readouterr().err) == [f"error: {run_dir} already holds a run (last.pt): pass --resume to continue it, or set training.run_dir to a new folder"]
    assert main([*args, "--resume"]) == 0  # ...and --resume takes it from last.pt to the end

    def without_timing(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    for name in ("last.pt", "best.pt"):
        resumed, uninterrupted = read_checkpoint(run_dir / name), read_checkpoint(trained / name)
        assert (resumed["step"], resumed["epoch"], resumed["best_epoch"]) == (uninterrupted["step"], uninterrupted["epoch"], uninterrupted["best_epoch"]), name
        assert without_timing(resumed["history"]) == without_timing(uninterrupted["history"]), name
        for key, value in uninterrupted["model_state"].items():
            assert torch.equal(resumed["model_state"][key], value), (name, key)
    assert len(pd.read_csv(run_dir / "history.csv")) == len(final["history"])
    assert temporaries(run_dir) == []


@pytest.mark.skipif(not TMPFS, reason="needs unshare and tmpfs (a user and mount namespace) to make a small disk")
def test_splice_on_a_full_disk(talks, reference_clips, tmp_path):
    mount = tmp_path / "small disk"
    code, stderr, left = run_on_full_disk(mount, 200, "splice", *no_settings(tmp_path), *splice_args(talks, mount / "clips"), "--quiet")
    errors = error_lines(stderr)
    failed = [f"talk {i}" for i in range(8) if f"error: {talks / f'talk {i}.flac'}: cannot write its clips to {mount / 'clips'}: No space left on device" in errors]
    assert failed and len(failed) < 8, errors
    recorded = sorted(p.stem for p in (left / "clips" / ".done").iterdir())
    assert recorded == sorted({f"talk {i}" for i in range(8)} - set(failed))  # the talks done, and only they
    for talk in recorded:
        for side in ("hr", "lr"):
            assert tree(left / "clips" / side / talk) == tree(reference_clips / side / talk) != {}
    if code == 2:  # the manifest did not fit either: said so, and no partial one
        assert len(errors) == len(failed) + 1
        assert errors[-1] == f"error: {mount / 'clips' / 'manifest.csv'}: cannot write (No space left on device); run splice again once it can be written"
        assert not (left / "clips" / "manifest.csv").exists()
    else:  # removing the failed clip's temporary made room for it
        assert code == 1 and errors[-1].startswith(f"error: {len(failed)} file(s) could not be read")
        assert sorted(pd.read_csv(left / "clips" / "manifest.csv").talk.unique()) == recorded
    assert temporaries(left) == []
    for path in (left / "clips").rglob("*.flac"):  # what lies under a final name is a whole clip
        assert sf.info(path).frames == (8000 if "/hr/" in path.as_posix() else 2000)


@pytest.mark.skipif(not TMPFS, reason="needs unshare and tmpfs (a user and mount namespace) to make a small disk")
def test_upsample_on_a_full_disk(tmp_path, checkpoint):
    src = tmp_path / "in"
    write_talk(src / "short.wav", 2.0)  # 64 kB out: fits
    write_talk(src / "talk.wav", 20.0, seed=1)  # 640 kB out: does not
    mount = tmp_path / "small disk"
    code, stderr, left = run_on_full_disk(mount, 300, "upsample", str(src), "-o", str(mount / "out"), "--checkpoint", str(checkpoint), "-q", *no_settings(tmp_path))
    assert code == 1
    assert error_lines(stderr) == [f"error: {src / 'talk.wav'}: cannot write {mount / 'out' / 'talk.wav'} (No space left on device)"]
    assert [p.relative_to(left).as_posix() for p in left.rglob("*") if p.is_file()] == ["out/short.wav"]
    assert sf.info(left / "out" / "short.wav").frames == 2 * HIGH


@pytest.mark.skipif(not TMPFS, reason="needs unshare and tmpfs (a user and mount namespace) to make a small disk")
def test_train_on_a_full_disk(clips, tmp_path):
    mount = tmp_path / "small disk"
    code, stderr, left = run_on_full_disk(mount, 16, "train", *train_args(clips, mount / "run", "training.max_steps=1"))
    assert code == 2
    assert error_lines(stderr) == [f"error: {mount / 'run' / 'best.pt'}: cannot write: No space left on device"]
    assert [p.name for p in left.rglob("*")] == []  # no partial checkpoint, and no empty run folder either


def test_full_disk_injected_in_process(talks, clips, tmp_path, monkeypatch, capsys):
    """The same faults where no small file system can be mounted: writes fail with ENOSPC."""
    real_save = checkpoint_module.torch.save
    saves = {"n": 0}

    def save_then_fill(obj, f, *a, **k):
        saves["n"] += Path(f).name.startswith(".last.")
        if saves["n"] == 2:  # the second last.pt: epoch 2
            Path(f).write_bytes(b"half a checkpoint")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(f))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_fill)
    run_dir = tmp_path / "run"
    assert main(["train", *train_args(clips, run_dir, "training.epochs=2")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {run_dir / 'last.pt'}: cannot write: No space left on device"]
    assert read_checkpoint(run_dir / "last.pt")["epoch"] == 1  # the last good checkpoint is kept, whole
    assert temporaries(run_dir) == []
    monkeypatch.undo()

    import audio_superres.preprocessing.splice as splice_module

    real_write = splice_module.write_audio

    def write_until_full(path, *a, **k):
        if "talk 3" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, *a, **k)

    monkeypatch.setattr(splice_module, "write_audio", write_until_full)
    out = tmp_path / "clips"
    assert main(["splice", *no_settings(tmp_path), *splice_args(talks, out), "--quiet"]) == 1
    assert error_lines(capsys.readouterr().err)[0] == f"error: {talks / 'talk 3.flac'}: cannot write its clips to {out}: No space left on device"
    assert pd.read_csv(out / "failures.csv").path.tolist() == [str(talks / "talk 3.flac")]
    assert "talk 3" not in pd.read_csv(out / "manifest.csv").talk.tolist()
    assert temporaries(out) == []


# --- untrusted files ----------------------------------------------------------------------------


class Payload:
    """Unpickling this runs ``open(marker, "w")``: the file appears if the checkpoint's code runs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def poisoned_checkpoint(path: Path, marker: Path, like: Path) -> Path:
    """A real checkpoint (``like``) with a payload slipped into its data settings."""
    checkpoint = torch.load(like, weights_only=True)
    checkpoint["data"]["note"] = Payload(marker)
    torch.save(checkpoint, path)
    # the payload is live: a plain torch.load would run it
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path


def test_checkpoint_carrying_code_is_refused_by_every_command(clips, checkpoint, trained, tmp_path, capsys):
    marker = tmp_path / "pwned"
    bad = poisoned_checkpoint(tmp_path / "poisoned.pt", marker, checkpoint)
    refused = f"{bad}: not a valid checkpoint: it holds Python objects other than tensors and plain values, refused for safety (weights_only)"
    audio = tmp_path / "in"
    write_talk(audio / "a.wav", 1.0)

    assert main(["upsample", str(audio), "-o", str(tmp_path / "up"), "--checkpoint", str(bad), *no_settings(tmp_path)]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {refused}"]
    assert main(["upsample", str(audio / "a.wav"), *no_settings(tmp_path), "--set", f"upsampling.checkpoint={bad}"]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {refused}"]
    assert main(["evaluate", "--checkpoint", str(bad), "--input", str(audio), "-o", str(tmp_path / "eval"), *no_settings(tmp_path)]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {refused}"]

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    poisoned_checkpoint(run_dir / "last.pt", marker, trained / "last.pt")
    assert main(["train", "--resume", *train_args(clips, run_dir)]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {refused.replace(str(bad), str(run_dir / 'last.pt'))}"]

    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "poisoned.pt", "run"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt"]


# --- settings -----------------------------------------------------------------------------------

SETTINGS_CASES = [  # (file, content, the error line after "error: <settings>/<file>: ")
    ("data.json", '{"factor": 4,}', "malformed JSON at line 1 column 14: Expecting property name enclosed in double quotes"),
    ("data.json", "", "malformed JSON at line 1 column 1: Expecting value"),
    ("data.json", "[1, 2]", "expected a JSON object, got list"),
    ("model.json", '{"widht": 8}', "model.widht: unknown key (did you mean model.width?)"),
    ("training.json", '{"batch_size": "sixteen"}', "training.batch_size: Input should be a valid integer, unable to parse string as an integer"),
    ("upsampling.json", '{"chunk_seconds": Infinity}', "upsampling.chunk_seconds: Input should be a finite number"),
    ("data.json", '{"clip_seconds": NaN}', "data.clip_seconds: Input should be a finite number"),
    ("data.json", '{"splits": {"train": 0.9}}', "data.splits: fractions must sum to 1, got 0.9 + 0.2 + 0.2 = 1.3"),
    ("data.json", '{"lowres": "magic"}', "data.lowres: Input should be 'soxr', 'decimate', 'subsample' or 'butterworth'"),
]


@pytest.mark.parametrize("command", [["splice"], ["split"], ["train", "--resume"], ["upsample", "x.wav"], ["evaluate"]])
def test_bad_settings_files_give_one_line_naming_file_and_field(tmp_path, capsys, command):
    for name, content, problem in SETTINGS_CASES:
        folder = tmp_path / name.removesuffix(".json") / str(len(content))
        folder.mkdir(parents=True)
        (folder / name).write_text(content, encoding="utf-8")
        assert main([*command, "--settings", str(folder)]) == 2, (name, content)
        assert capsys.readouterr().err.splitlines() == [f"error: {folder / name}: {problem}"], (name, content)
    folder = tmp_path / "folder instead of file"
    (folder / "model.json").mkdir(parents=True)
    assert main([*command, "--settings", str(folder)]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {folder / 'model.json'}: not a file; a settings file must be a JSON file (or absent, for defaults)"]
    assert main([*command, *no_settings(tmp_path), "--set", "data.hop_seconds=Infinity"]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: --set data.hop_seconds: Input should be a finite number"]


def test_paths_in_settings_that_do_not_exist(tmp_path, clips, checkpoint, capsys):
    missing = tmp_path / "missing"
    assert main(["splice", *no_settings(tmp_path), "--set", f"data.input_dir={missing}", "--set", f"data.output_dir={tmp_path / 'clips'}"]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {missing}: input folder does not exist (data.input_dir)"]
    audio = tmp_path / "a.wav"
    write_talk(audio, 0.5)
    assert main(["upsample", str(audio), *no_settings(tmp_path), "--set", f"upsampling.checkpoint={missing / 'best.pt'}"]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {missing / 'best.pt'}: checkpoint file does not exist (upsampling.checkpoint)"]
    assert main(["upsample", str(audio), *no_settings(tmp_path), "--checkpoint", str(missing / "best.pt")]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {missing / 'best.pt'}: checkpoint file does not exist (--checkpoint)"]
    for command in (["train"], ["split"]):
        assert main([*command, *no_settings(tmp_path), "--set", f"data.output_dir={clips.parent / 'talks'}", "--set", f"training.run_dir={tmp_path / 'run'}"]) == 2
        (line,) = error_lines(capsys.readouterr().err)
        assert line.startswith(f"error: {clips.parent / 'talks'}") and "run `pipeline splice`" in line, line
    assert main(["evaluate", "--checkpoint", str(checkpoint), *no_settings(tmp_path), "--set", f"data.output_dir={clips.parent / 'talks'}"]) == 2
    assert error_lines(capsys.readouterr().err) == [f"error: {clips.parent / 'talks' / 'splits' / 'test.csv'}: no test split; run `pipeline split` first, or pass --input FOLDER"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
