"""An adversarial battery against every ``pipeline`` command, as a user's bad day would run it.

    python benchmarks/bench_reliability.py              # every case, one at a time
    python benchmarks/bench_reliability.py -j 2         # two cases at once
    python benchmarks/bench_reliability.py --only upsample_   # the cases whose id or command matches
    python benchmarks/bench_reliability.py --list       # what each case does and expects
    python benchmarks/bench_reliability.py --strict     # exit 1 when any case is traceback/hang/wrong/lost

Each case builds its inputs in a fresh temporary folder (generated audio, damaged copies of a small
corpus, run and checkpoint made once at the start with the commands themselves), runs the console
script ``pipeline`` in subprocesses (cwd: that folder; ``--settings`` an empty folder there, so
defaults) and ends as one of:

    clean error  exit != 0 and an ``error:`` line naming the file or setting, one line per problem
    handled      exit 0 and the case's own check of the result passes
    skipped      the fault cannot be made here (no tmpfs, root without a way to drop privileges)
    traceback    "Traceback (most recent call last)" on stderr
    hang         a command ran past its time limit (killed)
    wrong        the case's check fails: exit 0 where an error was due, a wrong length or rate, an
                 all-zero output, an unclear message, peak memory above 1 GB, ...
    lost         an input changed or vanished, or an earlier good output was destroyed

Precedence when several hold: lost, hang, traceback, wrong. Peak memory is each command's own
(``os.wait4``: the largest resident set of the process and its waited-for children); a command whose
process tree passes 4 GB is killed at once and counts as wrong. The battery exits 0 (it reports),
``--strict`` exits 1 on any traceback/hang/wrong/lost, and 2 when the shared fixtures cannot be made.
Nothing outside the temporary folder is touched; ``--keep`` leaves it for inspection.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

OUTCOMES = ("clean error", "handled", "skipped", "traceback", "hang", "wrong", "lost", "bench error")
BAD = ("traceback", "hang", "wrong", "lost")
MEMORY_LIMIT_MB = 1024
RUNAWAY_MB = 4096
TIMEOUT = 120.0
LOW, HIGH, FACTOR = 4000, 16000, 4
BWE = "model.bwe."  # where the bwe family's keys live: model.bwe.hop, or model.hop before the restructuring (found at setup)


def bwe(key_value: str) -> str:
    return BWE + key_value


def tiny() -> list[str]:
    """A tiny bwe run: trains in seconds on 2 cores."""
    return [
        "model.name=bwe",
        bwe("hidden=8"),
        bwe("blocks=1"),
        "training.batch_size=2",
        "training.num_workers=0",
        "training.device=cpu",
        "training.warmup_steps=1",
        "training.epochs=1",
        "training.max_steps=2",
    ]


class Wrong(Exception):
    """The case's own check failed."""


class Skip(Exception):
    """The fault cannot be made on this machine."""


# --- running commands ---------------------------------------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    rc: int
    out: str
    err: str
    seconds: float
    peak_mb: float
    timed_out: bool = False
    runaway: bool = False

    @property
    def errors(self) -> list[str]:
        return [squeeze(ln) for ln in re.split(r"[\r\n]", self.err) if re.match(r"^(pipeline[\w ]*: )?error:", ln.strip())]

    def last(self) -> str:
        lines = [ln for ln in re.split(r"[\r\n]", self.err + "\n" + self.out) if ln.strip()]
        return (self.errors or [squeeze(ln) for ln in lines[-1:]] or [""])[-1] if self.rc else squeeze(lines[-1]) if lines else ""


def squeeze(text: str) -> str:
    """One line, with runs of one character (a 250-byte name, a deep path) shortened: nnn..(246)."""
    text = text[:5000]  # a message can be a megabyte of one line; only its start is shown
    text = re.sub(r"(.)\1{7,}", lambda m: f"{m[1] * 3}..({len(m[0])})", " ".join(text.split()))
    return re.sub(r"([^/\s]+/)\1{2,}", lambda m: f"{m[1][:-1]}/(x{len(m[0]) // len(m[1])})/", text)


def _session_rss_mb(sid: int) -> float:
    """Resident memory of every process in session ``sid`` (the command and all it started)."""
    total = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) == sid:
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class Proc:
    """A command started in its own session, with stdout/stderr in files (no pipe can fill up).

    Peak memory comes from GNU time wrapped round the command itself (``%M``): ``wait4`` on a child
    of this process would count this process's own size, which a forked child inherits."""

    def __init__(self, argv: list[str], cwd: Path, env: dict, log: Path, at: int = 0):
        self.out_path, self.err_path, self.rss_path = log.with_suffix(".out"), log.with_suffix(".err"), log.with_suffix(".rss")
        self.argv = argv
        if TIME:
            argv = [*argv[:at], TIME, "-f", "%M", "-o", str(self.rss_path), *argv[at:]]
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        self.t0 = time.monotonic()

    def err_text(self) -> str:
        return self.err_path.read_bytes().decode("utf-8", "replace")

    def out_text(self) -> str:
        return self.out_path.read_bytes().decode("utf-8", "replace")

    def signal(self, sig: int, group: bool = False) -> None:
        try:
            os.killpg(self.popen.pid, sig) if group else os.kill(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def running(self) -> bool:
        if self.popen.returncode is not None:
            return False
        pid, status, ru = os.wait4(self.popen.pid, os.WNOHANG)
        if pid:
            self._done(status, ru)
        return self.popen.returncode is None

    def _done(self, status: int, ru) -> None:
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.seconds = time.monotonic() - self.t0
        try:
            self.peak_mb = int(self.rss_path.read_text().split()[-1]) / 1024
        except (OSError, ValueError, IndexError):  # no GNU time, or it was killed too
            self.peak_mb = None

    def wait(self, timeout: float = TIMEOUT) -> Run:
        """Wait for the command; kill its session past ``timeout`` s (a hang) or past RUNAWAY_MB."""
        timed_out = runaway = False
        next_poll, polled = 0.0, 0.0
        while self.running():
            now = time.monotonic()
            if now - self.t0 > timeout and not timed_out:
                timed_out = True
                self.signal(signal.SIGKILL, group=True)
            if now >= next_poll and not timed_out and not runaway:
                next_poll = now + 0.25
                polled = max(polled, _session_rss_mb(self.popen.pid))
                if polled > RUNAWAY_MB:
                    runaway = True
                    self.signal(signal.SIGKILL, group=True)
            time.sleep(0.02)
        self.signal(signal.SIGKILL, group=True)  # strays (workers of a killed command)
        peak = self.peak_mb if self.peak_mb is not None else polled
        return Run(self.argv, self.popen.returncode, self.out_text(), self.err_text(), self.seconds, peak, timed_out, runaway)


# --- a case's folder and tools ----------------------------------------------------------------------


@dataclass
class Shared:
    exe: list[str]
    root: Path
    talks: Path = Path()
    big_talks: Path = Path()
    clips: Path = Path()
    run: Path = Path()
    eval: Path = Path()
    no_dac: list[str] | None = None  # a prefix under which permission bits bind root too (see Ctx.unprivileged)
    tmpfs: bool = False
    keep: bool = False
    env: dict = field(default_factory=dict)


class Ctx:
    def __init__(self, folder: Path, shared: Shared):
        self.dir, self.s = folder, shared
        self.runs: list[Run] = []
        self.protected: dict[str, str | None] = {}
        self.lost: list[str] = []
        self.notes: list[str] = []  # kept in the detail whatever the outcome
        self.settings = folder / "settings"
        self.settings.mkdir(parents=True)
        self._n = 0

    def p(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def env(self) -> dict:
        return {**os.environ, "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(self.dir / ".mpl"), **self.s.env}

    def argv(self, cmd: str, args, settings: bool = True, prefix=()) -> list[str]:
        head = [*self.s.exe, cmd] if cmd else list(self.s.exe)
        return [*prefix, *head, *(["--settings", str(self.settings)] if settings and cmd else []), *map(str, args)]

    def start(self, cmd: str, *args, settings: bool = True, prefix=()) -> Proc:
        self._n += 1
        return Proc(self.argv(cmd, args, settings, prefix), self.dir, self.env(), self.dir / f".log{self._n}", at=len(prefix))

    def finish(self, proc: Proc, timeout: float = TIMEOUT) -> Run:
        run = proc.wait(timeout)
        for where in (f"{self.dir}/", f"{self.s.root}/"):  # paths in messages, relative to the case
            run.out, run.err = run.out.replace(where, ""), run.err.replace(where, "")
        self.runs.append(run)
        return run

    def run(self, cmd: str, *args, timeout: float = TIMEOUT, settings: bool = True, prefix=()) -> Run:
        return self.finish(self.start(cmd, *args, settings=settings, prefix=prefix), timeout)

    def protect(self, *paths: Path) -> None:
        """Hash every file under ``paths`` now; the case is 'lost' if any differs at the end."""
        for p in paths:
            for f in [p] if not p.is_dir() else [q for q in p.rglob("*") if q.is_file() and not q.is_symlink()]:
                self.protected[str(f)] = digest(f)

    def check_protected(self) -> list[str]:
        gone = []
        for f, h in self.protected.items():
            if not os.path.lexists(f):
                gone.append(f"{Path(f).name} vanished")
            elif digest(Path(f)) != h:
                gone.append(f"{Path(f).name} changed")
        return gone + self.lost

    # faults made with namespaces: a small tmpfs, a read-only bind mount, another user
    def unprivileged(self) -> list[str]:
        """A prefix under which permission bits bind: root without its DAC capabilities."""
        if os.geteuid() != 0:
            return []
        if self.s.no_dac is None:
            raise Skip("skipped (root): permission bits do not bind root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
        return self.s.no_dac

    def mounted(self, mount: Path, *, size_kb: int | None = None, ro: bool = False, setup: str = "") -> list[str]:
        """A prefix running the command with ``mount`` a ``size_kb`` tmpfs (or bind-mounted read-only),
        after the shell lines ``setup`` ($m is the mount); the tmpfs is gone afterwards, its content
        copied to ``mount``.after."""
        if not self.s.tmpfs:
            raise Skip("skipped: no mount namespace here (unshare -m)")
        mount.mkdir(parents=True, exist_ok=True)
        after = mount.with_name(mount.name + ".after")
        after.mkdir()
        how = f'mount -t tmpfs -o size={size_kb}k tmpfs "$m"' if size_kb else 'mount --bind "$m" "$m" && mount -o remount,bind,ro "$m"'
        script = f'm="$1"; shift; {how} || exit 99; {setup}\n"$@"; rc=$?; cp -a "$m"/. "{after}"/ 2>/dev/null; exit $rc'
        return ["unshare", "-m" if os.geteuid() == 0 else "-rm", "sh", "-c", script, "sh", str(mount)]


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --- audio and files ------------------------------------------------------------------------------------


def speech(seconds: float, rate: int, channels: int = 1, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """Speech-like float32 ``(n, channels)``: a gliding harmonic voice with syllables and a little noise."""
    n = max(1, int(round(seconds * rate)))
    t = np.arange(n) / rate
    f0 = 130 + 30 * np.sin(2 * np.pi * 0.4 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 40) if k * 160 < rate / 2)
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t + seed)) + 0.01 * np.random.default_rng(seed).standard_normal(n)
    x = amp * x / max(np.abs(x).max(), 1e-9)
    return np.stack([x * (1 - 0.1 * c) for c in range(channels)], 1).astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, rate, subtype=subtype)
    return path


def long_wav(path: Path, seconds: float, rate: int) -> Path:
    """A long PCM-16 WAV written block by block (a 10 s block repeated)."""
    block = speech(10.0, rate)
    with sf.SoundFile(str(path), "w", rate, 1, "PCM_16") as f:
        for _ in range(int(seconds // 10)):
            f.write(block)
    return path


def raw_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """A PCM-16 WAV whose header says ``rate``, whatever that is."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    ch = pcm.shape[1] if pcm.ndim == 2 else 1
    data = pcm.tobytes()
    fmt = struct.pack("<HHIIHH", 1, ch, rate & 0xFFFFFFFF, (rate * ch * 2) & 0xFFFFFFFF, ch * 2, 16)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data)
    return path


def truncated(path: Path, x: np.ndarray, rate: int) -> Path:
    write(path, x, rate)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def beside(src: Path) -> Path:
    """The output ``pipeline upsample SRC`` writes beside SRC: ``<stem>_<tag>.wav`` (``_x4`` or ``_16k``)."""
    found = [p for p in src.parent.glob(f"{glob_escape(src.stem)}_*.wav") if p != src and not p.name.startswith(".")]
    return found[0] if len(found) == 1 else src.with_name(f"{src.stem}_x{FACTOR}.wav")


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def out_info(path: Path) -> sf._SoundFileInfo:
    if not path.is_file():
        raise Wrong(f"exit 0 but no output {path.name}")
    with open(path, "rb") as f:  # a file object: any name (libsndfile refuses one over 1023 bytes)
        return sf.info(f)


def check_output(path: Path, frames: int | None, channels: int = 1, rate: int = HIGH, tol: int = 0) -> str:
    """The output's rate, channels and length, and that it is not silent."""
    info = out_info(path)
    if info.samplerate != rate or info.channels != channels:
        raise Wrong(f"{path.name}: {info.samplerate} Hz x{info.channels}, expected {rate} Hz x{channels}")
    if frames is not None and abs(info.frames - frames) > tol:
        raise Wrong(f"{path.name}: {info.frames} frames, expected {frames}")
    with open(path, "rb") as f:
        y, _ = sf.read(f, dtype="float32", frames=HIGH * 60, always_2d=True)
    if len(y) > 64 and not np.any(y):
        raise Wrong(f"{path.name}: all-zero output")
    return f"{info.frames} frames {info.samplerate} Hz x{info.channels}"


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# --- judging ----------------------------------------------------------------------------------------------------


def error(run: Run, *names: str, words: tuple[str, ...] = (), not_words: tuple[str, ...] = ()) -> tuple[str, str]:
    """A clean error: exit != 0, 'error:' lines, naming one of ``names``, with one of ``words`` and
    none of ``not_words`` (misleading), no line repeated."""
    if run.timed_out or run.runaway:
        raise Wrong("killed")
    if run.rc == 0:
        said = run.last()[:100]
        raise Wrong("exit 0, expected an error" + (f" (last line: {said})" if said else ""))
    lines = run.errors
    if not lines:
        raise Wrong(f"exit {run.rc} with no 'error:' line ({run.last()[:100]})")
    text = " ".join(lines)
    if names and not any(n in text for n in names):
        raise Wrong(f"error does not name {names[0]}: {lines[0][:130]}")
    if words and not any(w.lower() in text.lower() for w in words):
        raise Wrong(f"misleading words (wants '{words[0]}'): {lines[0][:130]}")
    if any(w.lower() in text.lower() for w in not_words):
        raise Wrong(f"misleading words ('{next(w for w in not_words if w.lower() in text.lower())}'): {lines[0][:130]}")
    if len(set(lines)) < len(lines):
        raise Wrong(f"the same error line printed {len(lines) - len(set(lines)) + 1} times")
    return "clean error", lines[0]


def ok(run: Run, detail: str = "") -> tuple[str, str]:
    if run.timed_out or run.runaway:
        raise Wrong("killed")
    if run.rc != 0:
        raise Wrong(f"exit {run.rc}: {run.last()[:150]}")
    return "handled", detail or run.last()


def need(condition: bool, problem: str, fine: str) -> str:
    if not condition:
        raise Wrong(problem)
    return fine


def either(run: Run, check: Callable[[], str], *names: str, words: tuple[str, ...] = (), not_words: tuple[str, ...] = ()) -> tuple[str, str]:
    """Exit 0 with ``check()`` passing, or a clean error."""
    return ok(run, check()) if run.rc == 0 else error(run, *names, words=words, not_words=not_words)


# --- the cases ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    command: str
    expected: str
    fn: Callable[[Ctx], tuple[str, str]]


CASES: list[Case] = []


def case(cid: str, command: str, expected: str):
    def deco(fn):
        CASES.append(Case(cid, command, expected, fn))
        return fn

    return deco


def sets(*overrides: str) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def copy(c: Ctx, src: Path, name: str | None = None) -> Path:
    dst = c.p(name or src.name)
    shutil.copytree(src, dst, symlinks=True) if src.is_dir() else shutil.copy2(src, dst)
    return dst


def splice_args(inp: Path | str, out: Path | str, *more: str) -> list[str]:
    return sets(f"data.input_dir={inp}", f"data.output_dir={out}", "data.trim_seconds=0.5", "data.clip_seconds=0.5", *more)


def train_args(clips: Path | str, run: Path | str, *more: str) -> list[str]:
    return [*sets(f"data.output_dir={clips}", f"training.run_dir={run}", *tiny(), *more), "--quiet"]


def eval_args(c: Ctx, clips: Path, out: Path | str, *more: str) -> list[str]:
    return ["--checkpoint", c.s.run / "best.pt", *sets(f"data.output_dir={clips}", f"data.input_dir={c.s.talks}", "data.trim_seconds=0.5"), "-o", out, "--device", "cpu", "--figures", "1", "-q", *more]


# ---- upsample: bad inputs, one file each


def _bad_input(cid: str, name: str, make: Callable[[Path], object], expected: str, check: Callable[[Path], str] | None = None, *, words=(), must_work=False):
    def fn(c: Ctx):
        src = c.p("in", name)
        src.parent.mkdir(parents=True, exist_ok=True)
        make(src)
        c.protect(c.p("in"))
        r = c.run("upsample", src, "-q")
        out = beside(src)
        misleading = ("does not exist", "no such file")  # it does exist
        if check is None:
            return error(r, name[:40], words=words, not_words=misleading)
        if must_work:
            return ok(r, check(out) if r.rc == 0 else "")
        return either(r, lambda: check(out), name[:40], words=words, not_words=misleading)

    case(cid, "upsample", expected)(fn)


_bad_input("upsample_empty_file", "empty.wav", lambda p: p.write_bytes(b""), "clean error: empty file")
_bad_input("upsample_truncated_wav", "cut.wav", lambda p: truncated(p, speech(2, LOW), LOW), "clean error: truncated")
_bad_input("upsample_truncated_flac", "cut.flac", lambda p: truncated(p, speech(2, LOW), LOW), "clean error: truncated FLAC")
_bad_input("upsample_text_as_wav", "notes.wav", lambda p: p.write_text("meeting notes\n" * 50), "clean error: not audio")
_bad_input(
    "upsample_random_flac", "noise.flac", lambda p: p.write_bytes(np.random.default_rng(1).bytes(20000)), "clean error: not audio, says so", words=("not a", "audio", "unreadable", "cannot decode")
)
_bad_input("upsample_dir_named_wav", "folder.wav", lambda p: (p.mkdir(), (p / "readme.txt").write_text("x")), "clean error: a folder, no audio")
_bad_input("upsample_zero_length", "zero.wav", lambda p: write(p, np.zeros((0, 1), np.float32), LOW), "clean error: no samples")
_bad_input("upsample_nan_samples", "nan.wav", lambda p: write(p, np.where(np.arange(LOW)[:, None] == 100, np.nan, speech(1, LOW)), LOW, "FLOAT"), "clean error: NaN samples")
_bad_input("upsample_one_sample", "one.wav", lambda p: write(p, np.full((1, 1), 0.2, np.float32), LOW), "handled (4 samples out) or clean error", lambda o: check_output(o, FACTOR))
_bad_input("upsample_six_channels", "six.wav", lambda p: write(p, speech(1, LOW, 6), LOW), "handled: 6 channels, 4x length", lambda o: check_output(o, FACTOR * LOW, 6), must_work=True)
_bad_input(
    "upsample_192k", "hi.wav", lambda p: write(p, speech(0.5, 192000), 192000), "handled: resampled, 16 kHz, same duration", lambda o: check_output(o, HIGH // 2, tol=FACTOR * 2), must_work=True
)
_bad_input("upsample_name_250_bytes", "n" * 246 + ".wav", lambda p: write(p, speech(1, LOW), LOW), "handled: a valid 250-byte name works", lambda o: check_output(o, FACTOR * LOW), must_work=True)
_bad_input("upsample_pcm24", "deep.wav", lambda p: write(p, speech(1, LOW), LOW, "PCM_24"), "handled: 24-bit input", lambda o: check_output(o, FACTOR * LOW), must_work=True)


@case("upsample_float_above_full_scale", "upsample", "float WAV peaking at 2.0: not hard-clipped silently (an error, a word about it, or no clipping)")
def _(c):
    src = write(c.p("in", "hot.wav"), 2.0 * speech(1, LOW, amp=1.0), LOW, "FLOAT")
    c.protect(c.p("in"))
    r = c.run("upsample", src)
    if r.rc:
        return error(r, "hot.wav")
    out = beside(src)
    info = out_info(out)
    y, _ = sf.read(str(out), dtype="float32")
    clipped = float(np.mean(np.abs(y) >= 32767 / 32768))
    said = re.search(r"clip|full scale|peak|gain|above 1", r.err + r.out, re.I)
    if info.subtype.startswith("PCM") and clipped > 0.001 and not said:
        raise Wrong(f"{clipped:.1%} of output samples at full scale ({info.subtype}), no word about clipping")
    return "handled", f"{info.subtype}, {clipped:.2%} at full scale" + (", said so" if said else "")


@case("upsample_missing_input", "upsample", "clean error naming the missing file")
def _(c):
    return error(c.run("upsample", "nowhere.wav", "-q"), "nowhere.wav")


@case("upsample_long_path", "upsample", "handled: a 3000-character path")
def _(c):
    deep = c.p(*["d" * 200] * 15)
    deep.mkdir(parents=True)
    src = deep / "talk.wav"
    os.rename(write(c.p("talk.wav"), speech(1, LOW), LOW), src)  # libsndfile itself cannot open so long a path
    c.protect(src)
    r = c.run("upsample", src, "-q")
    return ok(r, check_output(beside(src), FACTOR * LOW) if r.rc == 0 else "")


@case("upsample_bytes_name", "upsample", "handled (or a clean error) for a name that is not UTF-8")
def _(c):
    (c.p("in")).mkdir()
    write(c.p("good.wav"), speech(1, LOW), LOW)
    os.rename(c.p("good.wav"), os.path.join(bytes(c.p("in")), b"talk_\xff\xfe.wav"))
    c.protect(c.p("in"))
    r = c.run("upsample", "in", "-o", "out", "-q")
    outs = list(c.p("out").rglob("*.wav")) if c.p("out").is_dir() else []
    return either(r, lambda: need(len(outs) == 1, f"{len(outs)} outputs for 1 input", "1 output"), "talk_")


@case("upsample_permission_denied", "upsample", "clean error that says permission denied (permission bits binding)")
def _(c):
    prefix = c.unprivileged()
    src = write(c.p("in", "secret.wav"), speech(1, LOW), LOW)
    src.chmod(0)
    c.p("out").mkdir(mode=0o777)
    c.p("out").chmod(0o777)
    return error(c.run("upsample", src, "-o", c.p("out", "secret.wav"), "-q", prefix=prefix), "secret.wav", words=("permission denied",))


@case("upsample_unreadable_subfolder", "upsample", "a sub-folder it cannot read is an error, not skipped silently (permission bits binding)")
def _(c):
    prefix = c.unprivileged()
    write(c.p("in", "a.wav"), speech(1, LOW), LOW)
    write(c.p("in", "locked", "b.wav"), speech(1, LOW), LOW)
    c.p("in", "locked").chmod(0)
    c.p("out").mkdir()
    c.p("out").chmod(0o777)
    r = c.run("upsample", "in", "-o", "out", "-q", prefix=prefix)
    c.p("in", "locked").chmod(0o755)
    if r.rc == 0:
        raise Wrong("exit 0: the unreadable in/locked/ was skipped without a word")
    return error(r, "locked")


# ---- upsample: absurd header rates and link loops


def _absurd_rate(cmd: str, rate: int):
    def fn(c: Ctx):
        c.p("in").mkdir()
        src = raw_wav(c.p("in", "odd.wav"), speech(2, HIGH)[:, 0], rate)
        c.protect(c.p("in"))
        if cmd == "upsample":
            r = c.run("upsample", src, "-o", "odd_up.wav", "-q", timeout=30)
            return either(r, lambda: check_output(c.p("odd_up.wav"), None), "odd.wav")
        r = c.run("splice", *splice_args("in", "clips", "data.trim_seconds=0"), "-q", timeout=30)
        return either(r, lambda: need(c.p("clips", "manifest.csv").is_file(), "no manifest", "manifest written"), "odd.wav", "failures.csv")

    case(f"{cmd}_rate_{rate}hz", cmd, f"a WAV whose header says {rate} Hz: clean error or handled, memory <= 1 GB, within 30 s")(fn)


for _cmd in ("upsample", "splice"):
    for _rate in (0, 1, 2**31 - 1, 2**32 - 1):
        _absurd_rate(_cmd, _rate)


@case("upsample_self_link", "upsample", "a folder linking to itself (ln -s . in/a): each file once, no hang")
def _(c):
    write(c.p("in", "talk.wav"), speech(1, LOW), LOW)
    os.symlink(".", c.p("in", "a"))
    c.protect(c.p("in", "talk.wav"))
    r = c.run("upsample", "in", "-o", "out", "-q")
    outs = [p for p in c.p("out").rglob("*.wav")] if c.p("out").is_dir() else []

    def check():
        if len(outs) != 1:
            raise Wrong(f"{len(outs)} outputs for 1 input file (the link was followed round)")
        return "1 output"

    return either(r, check, "in")


@case("upsample_symlink_loop", "upsample", "a self-referencing link loop.wav -> loop.wav beside a good file: one line for it, the good file done")
def _(c):
    write(c.p("in", "talk.wav"), speech(1, LOW), LOW)
    os.symlink("loop.wav", c.p("in", "loop.wav"))
    c.protect(c.p("in", "talk.wav"))
    r = c.run("upsample", "in", "-o", "out", "-q")
    if not c.p("out", "talk.wav").is_file():
        raise Wrong("the good file beside the loop was not upsampled")
    return either(r, lambda: "loop skipped", "loop.wav")


# ---- upsample: outputs against inputs


@case("upsample_out_is_in", "upsample", "upsample DIR -o DIR: no input overwritten")
def _(c):
    write(c.p("in", "a.wav"), speech(1, LOW), LOW)
    write(c.p("in", "b.flac"), speech(1, LOW, seed=2), LOW)
    c.protect(c.p("in"))
    return either(c.run("upsample", "in", "-o", "in", "-q"), lambda: "inputs intact", "in")


@case("upsample_clash_two_inputs", "upsample", "upsample a.flac a.wav -o DIR: the clash refused, nothing overwritten")
def _(c):
    write(c.p("a.flac"), speech(1, LOW), LOW)
    write(c.p("a.wav"), speech(1, LOW, seed=3), LOW)
    c.protect(c.p("a.flac"), c.p("a.wav"))
    r = c.run("upsample", "a.flac", "a.wav", "-o", "out", "-q")
    return error(r, "a.wav", "a.flac")


@case("upsample_clash_into_input_folder", "upsample", "upsample d/a.flac d/a.wav -o d: a.flac's output must not replace the input d/a.wav")
def _(c):
    write(c.p("d", "a.flac"), speech(1, LOW), LOW)
    write(c.p("d", "a.wav"), speech(1, LOW, seed=3), LOW)
    c.protect(c.p("d"))
    return either(c.run("upsample", "d/a.flac", "d/a.wav", "-o", "d", "-q"), lambda: "inputs intact", "a.wav", "a.flac")


@case("upsample_blocked_output", "upsample", "-o under a file (out/sub where out is a file): clean error")
def _(c):
    write(c.p("in", "a.wav"), speech(1, LOW), LOW)
    c.p("out").write_text("I am a file")
    c.protect(c.p("out"))
    return error(c.run("upsample", "in", "-o", "out/sub", "-q"), "out")


@case("upsample_readonly_output", "upsample", "-o on a read-only folder: clean error")
def _(c):
    write(c.p("in", "a.wav"), speech(1, LOW), LOW)
    prefix = c.mounted(c.p("ro"), ro=True)
    return error(c.run("upsample", "in", "-o", c.p("ro"), "-q", prefix=prefix), "ro")


@case("upsample_full_disk", "upsample", "-o on a full 256 KB disk: clean error, no partial output under the real name")
def _(c):
    write(c.p("in", "a.wav"), speech(20, LOW), LOW)
    prefix = c.mounted(c.p("disk"), size_kb=256)
    r = c.run("upsample", "in", "-o", c.p("disk"), "-q", prefix=prefix)
    left = list(c.p("disk.after").iterdir())
    if r.rc == 0 or any(p.name == "a.wav" for p in left):
        raise Wrong(f"exit {r.rc}; left on the disk: {[p.name for p in left]}")
    return error(r, "a.wav", "disk", words=("space", "full"))


# ---- upsample: checkpoints


def _torch():
    import torch

    return torch


def damaged_checkpoint(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    torch = _torch()
    ck = torch.load(src, weights_only=True)
    edit(ck)
    torch.save(ck, dst)
    return dst


@case("upsample_nan_checkpoint", "upsample", "a checkpoint with NaN weights: must fail, not write silence with exit 0")
def _(c):
    def nan(ck):
        for v in ck["model_state"].values():
            if v.is_floating_point():
                v.fill_(float("nan"))

    ckpt = damaged_checkpoint(c.s.run / "best.pt", c.p("nan.pt"), nan)
    write(c.p("talk.wav"), speech(1, LOW), LOW)
    r = c.run("upsample", "talk.wav", "--checkpoint", ckpt, "-q")
    return either(r, lambda: check_output(beside(c.p("talk.wav")), FACTOR * LOW), "nan.pt", words=("nan", "finite"))


class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@case("upsample_pickle_checkpoint", "upsample", "a checkpoint carrying code: refused as unsafe (not 'not a PyTorch file'), code not run")
def _(c):
    torch = _torch()
    marker = c.p("PWNED")
    torch.save({"format": "audio-superres-checkpoint", "version": 1, "x": _Payload(str(marker))}, c.p("evil.pt"))
    write(c.p("talk.wav"), speech(1, LOW), LOW)
    r = c.run("upsample", "talk.wav", "--checkpoint", "evil.pt", "-q")
    if marker.exists():
        raise Wrong("the pickled code ran")
    return error(r, "evil.pt", words=("unsafe", "safety", "refused", "python objects"))


@case("upsample_garbage_checkpoint", "upsample", "random bytes as a checkpoint: clean error")
def _(c):
    c.p("junk.pt").write_bytes(np.random.default_rng(5).bytes(5000))
    write(c.p("talk.wav"), speech(1, LOW), LOW)
    return error(c.run("upsample", "talk.wav", "--checkpoint", "junk.pt", "-q"), "junk.pt")


# ---- upsample: what a newcomer does


def _folder(c: Ctx, n: int = 3, seconds: float = 1.0) -> Path:
    for i in range(n):
        write(c.p("in", f"t{i}.wav"), speech(seconds, LOW, seed=i), LOW)
    c.protect(c.p("in"))
    return c.p("in")


def _state(folder: Path) -> dict[str, tuple[int, str | None]]:
    return {p.name: (p.stat().st_mtime_ns, digest(p)) for p in sorted(folder.rglob("*.wav")) if not p.name.startswith(".")}


@case("upsample_rerun_skips", "upsample", "a second upsample of a folder skips finished outputs: no file rewritten")
def _(c):
    _folder(c)
    ok(c.run("upsample", "in", "-o", "out", "-q"))
    before = _state(c.p("out"))
    time.sleep(0.05)
    r = c.run("upsample", "in", "-o", "out")
    after = _state(c.p("out"))
    redone = [k for k in before if after.get(k, (0, None))[0] != before[k][0]]
    if r.rc == 0 and redone:
        raise Wrong(f"rerun rewrote {len(redone)}/{len(before)} finished outputs")
    return ok(r, "finished outputs left alone")


@case("upsample_overwrite", "upsample", "--overwrite redoes finished outputs")
def _(c):
    _folder(c, 2)
    ok(c.run("upsample", "in", "-o", "out", "-q"))
    before = _state(c.p("out"))
    time.sleep(0.05)
    r = c.run("upsample", "in", "-o", "out", "--overwrite", "-q")
    if r.rc and "overwrite" in " ".join(r.errors):
        raise Wrong(f"no --overwrite option: {r.errors[0][:90]}")
    after = _state(c.p("out"))
    if r.rc == 0 and any(after[k][0] == before[k][0] for k in before):
        raise Wrong("--overwrite left outputs as they were")
    return ok(r, "outputs redone")


@case("upsample_own_outputs", "upsample", "upsample a.wav, then upsample the folder: a_x4.wav (its own output beside it) is not taken as an input")
def _(c):
    write(c.p("in", "a.wav"), speech(1, LOW), LOW)
    ok(c.run("upsample", "in/a.wav", "-q"))
    r = c.run("upsample", "in", "-o", "out", "-q")
    names = sorted(p.name for p in c.p("out").rglob("*.wav")) if c.p("out").is_dir() else []
    if any(n.startswith("a_") for n in names):
        raise Wrong(f"its own earlier output was upsampled again: out/ holds {names}")
    return ok(r, f"out/ holds {names}")


@case("upsample_interrupted_resumes", "upsample", "kill -9 after the first file, rerun: only the missing files done, all complete")
def _(c):
    _folder(c, 4, 30.0)
    proc = c.start("upsample", "in", "-o", "out", "-q")
    while proc.running() and not (c.p("out").is_dir() and any(c.p("out").glob("t*.wav"))):
        time.sleep(0.02)
    if not proc.running():
        raise Skip("skipped: the run ended before it could be killed")
    proc.signal(signal.SIGKILL)
    c.finish(proc)
    first = _state(c.p("out"))
    r = c.run("upsample", "in", "-o", "out", "-q")
    ok(r)
    after = _state(c.p("out"))
    for i in range(4):
        check_output(c.p("out", f"t{i}.wav"), FACTOR * 30 * LOW)
    if temporaries(c.p("out")):
        raise Wrong(f"temporaries left: {[p.name for p in temporaries(c.p('out'))]}")
    redone = [k for k in first if after[k][0] != first[k][0]]
    if redone:
        raise Wrong(f"the rerun redid finished {redone}")
    return "handled", f"{len(first)} kept, {4 - len(first)} done"


@case("upsample_kill9_midfile", "upsample", "kill -9 mid-file, rerun: a complete output, no temporary left")
def _(c):
    write(c.p("long.wav"), speech(120, LOW), LOW)
    proc = c.start("upsample", "long.wav", "-o", "long_up.wav", "-q")
    t0 = time.monotonic()
    while proc.running() and not any(".tmp" in p.name for p in c.dir.iterdir()) and time.monotonic() - t0 < 60:
        time.sleep(0.02)
    time.sleep(0.3)
    if not proc.running():
        raise Skip("skipped: the run ended before it could be killed")
    proc.signal(signal.SIGKILL)
    c.finish(proc)
    if c.p("long_up.wav").exists():
        raise Wrong("a partial output under the final name after kill -9")
    r = c.run("upsample", "long.wav", "-o", "long_up.wav", "-q")
    detail = ok(r, check_output(c.p("long_up.wav"), FACTOR * 120 * LOW))
    if temporaries(c.dir):
        raise Wrong(f"temporaries left: {[p.name for p in temporaries(c.dir)]}")
    return detail


@case("upsample_concurrent_same_output", "upsample", "two upsamples into one folder at once: every output complete, no temporary left")
def _(c):
    _folder(c, 4, 8.0)
    procs = [c.start("upsample", "in", "-o", "out", "-q") for _ in range(2)]
    runs = [c.finish(p) for p in procs]
    for r in runs:
        if r.rc:
            error(r, "out")
    for i in range(4):
        check_output(c.p("out", f"t{i}.wav"), FACTOR * 8 * LOW)
    if temporaries(c.p("out")):
        raise Wrong(f"temporaries left: {[p.name for p in temporaries(c.p('out'))]}")
    return "handled", f"exits {[r.rc for r in runs]}, 4 outputs complete"


@case("upsample_progress_words", "upsample", "progress output has no TqdmWarning and no negative ETA (a failed file among good ones)")
def _(c):
    write(c.p("in", "a.wav"), speech(6, LOW), LOW)
    write(c.p("in", "b.wav"), speech(2, LOW, seed=1), LOW)
    truncated(c.p("in", "c.wav"), speech(8, LOW), LOW)
    r = c.run("upsample", "in", "-o", "out")
    text = r.err + r.out
    if "TqdmWarning" in text:
        raise Wrong("TqdmWarning printed")
    if re.search(r"<-\d|-\d+:\d\d", text):
        raise Wrong("negative ETA in the progress bar")
    return error(r, "c.wav")


@case("upsample_two_hours", "upsample", "a 2-hour 4 kHz file: exact length, peak memory <= 1 GB")
def _(c):
    long_wav(c.p("long.wav"), 7200, LOW)
    r = c.run("upsample", "long.wav", "-o", "long_up.wav", "--checkpoint", c.s.run / "best.pt", "-q", timeout=300)  # the tiny model: the stream is the point
    return ok(r, check_output(c.p("long_up.wav"), FACTOR * 7200 * LOW) + f", peak {r.peak_mb:.0f} MB, {r.seconds:.0f} s")


# ---- splice


def _talks(c: Ctx, n: int = 2, seconds: float = 3.0) -> Path:
    for i in range(n):
        write(c.p("in", f"talk{i}.flac"), speech(seconds, HIGH, seed=i), HIGH)
    return c.p("in")


def _failures(folder: Path) -> str:
    f = folder / "failures.csv"
    return " | ".join(f.read_text(errors="replace").splitlines()[1:3]) if f.is_file() else ""


def _manifest_rows(folder: Path) -> int:
    f = folder / "manifest.csv"
    return max(0, len(f.read_bytes().splitlines()) - 1) if f.is_file() else -1  # bytes: a name that is not UTF-8 stays as it is


@case("splice_self_link", "splice", "input folder linking to itself (ln -s . in/a): each talk once, no hang")
def _(c):
    _talks(c)
    os.symlink(".", c.p("in", "a"))
    c.protect(c.p("in", "talk0.flac"), c.p("in", "talk1.flac"))
    r = c.run("splice", *splice_args("in", "clips"), "-q")

    def check():
        talks = {ln.split(",")[1] for ln in c.p("clips", "manifest.csv").read_text().splitlines()[1:]}
        if len(talks) != 2:
            raise Wrong(f"{len(talks)} talks in the manifest for 2 files")
        return "2 talks"

    return either(r, check, "in")


@case("splice_symlink_loop", "splice", "loop.wav -> loop.wav among good talks: listed as failed or skipped, the rest spliced")
def _(c):
    _talks(c)
    os.symlink("loop.wav", c.p("in", "loop.wav"))
    r = c.run("splice", *splice_args("in", "clips"), "-q")
    rows = _manifest_rows(c.p("clips"))
    if rows <= 0:
        raise Wrong(f"good talks not spliced (exit {r.rc})")
    return either(r, lambda: f"{rows} clips", "loop.wav", "failures.csv")


@case("splice_out_is_in", "splice", "data.output_dir == data.input_dir: clean error, inputs intact")
def _(c):
    _talks(c)
    c.protect(c.p("in"))
    return error(c.run("splice", *splice_args("in", "in"), "-q"), "in", words=("input", "same"))


@case("splice_bad_files", "splice", "empty, truncated, text, folder named .wav, NaN beside a good talk: exit 1, failures listed, good talk spliced")
def _(c):
    _talks(c, 1)
    c.p("in", "empty.wav").write_bytes(b"")
    truncated(c.p("in", "cut.wav"), speech(3, HIGH), HIGH)
    c.p("in", "notes.wav").write_text("not audio\n" * 20)
    c.p("in", "dir.wav").mkdir()
    write(c.p("in", "nan.wav"), np.full((HIGH * 3, 1), np.nan, np.float32), HIGH, "FLOAT")
    write(c.p("in", "zero.wav"), np.zeros((0, 1), np.float32), HIGH)
    c.protect(c.p("in"))
    r = c.run("splice", *splice_args("in", "clips"), "-q")
    fails = c.p("clips", "failures.csv").read_text() if c.p("clips", "failures.csv").is_file() else ""
    missing = [n for n in ("empty.wav", "cut.wav", "notes.wav", "nan.wav") if n not in fails]
    if missing:
        raise Wrong(f"failures.csv does not list {missing}")
    if _manifest_rows(c.p("clips")) <= 0:
        raise Wrong("the good talk was not spliced")
    return error(r, "failures.csv")


@case("splice_odd_formats", "splice", "a 6-channel, a 192 kHz and a 1-sample file: spliced (or skipped) without failing")
def _(c):
    write(c.p("in", "six.wav"), speech(3, HIGH, 6), HIGH)
    write(c.p("in", "hi.wav"), speech(3, 192000), 192000)
    write(c.p("in", "one.wav"), np.full((1, 1), 0.1, np.float32), HIGH)
    r = c.run("splice", *splice_args("in", "clips"), "-q")
    return either(r, lambda: f"{_manifest_rows(c.p('clips'))} clips", "one.wav", "failures.csv")


@case("splice_bytes_name", "splice", "a talk whose name is not UTF-8: spliced or a clean error")
def _(c):
    _talks(c, 1)
    os.rename(c.p("in", "talk0.flac"), os.path.join(bytes(c.p("in")), b"talk_\xff.flac"))
    r = c.run("splice", *splice_args("in", "clips"), "-q")
    return either(r, lambda: f"{_manifest_rows(c.p('clips'))} clips", "talk_")


@case("splice_name_250_bytes", "splice", "a talk with a valid 250-byte name: spliced")
def _(c):
    write(c.p("in", "t" * 245 + ".flac"), speech(3, HIGH), HIGH)
    r = c.run("splice", *splice_args("in", "clips"), "-q")
    if r.rc:
        raise Wrong(f"exit {r.rc}; failures.csv: {_failures(c.p('clips'))[-120:]}")
    return ok(r, f"{_manifest_rows(c.p('clips'))} clips")


@case("splice_missing_input", "splice", "data.input_dir that does not exist: clean error naming it")
def _(c):
    return error(c.run("splice", *splice_args("nowhere", "clips"), "-q"), "nowhere")


@case("splice_n_jobs_0", "splice", "data.n_jobs=0: clean error naming it, or spliced")
def _(c):
    _talks(c)
    r = c.run("splice", *splice_args("in", "clips", "data.n_jobs=0"), "-q")
    return either(r, lambda: f"{_manifest_rows(c.p('clips'))} clips", "n_jobs")


@case("splice_blocked_output", "splice", "data.output_dir under a file: clean error")
def _(c):
    _talks(c)
    c.p("out").write_text("a file")
    return error(c.run("splice", *splice_args("in", "out/clips"), "-q"), "out")


@case("splice_readonly_output", "splice", "data.output_dir read-only: clean error")
def _(c):
    _talks(c)
    prefix = c.mounted(c.p("ro"), ro=True)
    return error(c.run("splice", *splice_args("in", c.p("ro")), "-q", prefix=prefix), "ro")


@case("splice_full_disk", "splice", "data.output_dir on a full 128 KB disk: clean error")
def _(c):
    _talks(c, 3, 6.0)
    prefix = c.mounted(c.p("disk"), size_kb=128)
    return error(c.run("splice", *splice_args("in", c.p("disk")), "-q", prefix=prefix), "disk", words=("space", "full", "cannot write"))


@case("splice_unreadable_subfolder", "splice", "a sub-folder it cannot read: an error, not skipped silently (permission bits binding)")
def _(c):
    prefix = c.unprivileged()
    _talks(c, 1)
    write(c.p("in", "locked", "talk9.flac"), speech(3, HIGH), HIGH)
    c.p("in", "locked").chmod(0)
    c.dir.chmod(0o777)
    r = c.run("splice", *splice_args("in", "clips"), "-q", prefix=prefix)
    c.p("in", "locked").chmod(0o755)
    if r.rc == 0:
        raise Wrong("exit 0: the unreadable in/locked/ was skipped without a word")
    return error(r, "locked")


@case("splice_concurrent", "splice", "two splices into one folder at once: one refused via the lock, the other completes")
def _(c):
    args = splice_args(c.s.big_talks, "clips", "data.n_jobs=1")
    runs = [c.finish(p) for p in [c.start("splice", *args) for _ in range(2)]]
    done = [r for r in runs if r.rc == 0]
    if len(done) == 2:
        fresh = [re.search(r"\((\d+) already complete\)", r.out) for r in runs]
        if any(m and int(m[1]) > 0 for m in fresh):
            raise Skip("skipped: the two runs did not overlap")
        raise Wrong("both splices wrote the folder at once")
    if not done:
        raise Wrong(f"neither splice completed: {runs[0].last()[:80]}")
    return error(next(r for r in runs if r.rc), "clips", words=("another", "lock", "in use"))


@case("splice_kill9_resume", "splice", "kill -9 mid-run, rerun: the same clips as an uninterrupted run")
def _(c):
    args = splice_args(c.s.big_talks, "clips", "data.n_jobs=1")
    proc = c.start("splice", *args, "-q")
    while proc.running() and not (c.p("clips", ".done").is_dir() and len(list(c.p("clips", ".done").iterdir())) >= 2):
        time.sleep(0.01)
    if not proc.running():
        raise Skip("skipped: the run ended before it could be killed")
    proc.signal(signal.SIGKILL)
    c.finish(proc)
    ok(c.run("splice", *args, "-q"))
    ok(c.run("splice", *splice_args(c.s.big_talks, "ref", "data.n_jobs=1"), "-q"))
    tree = lambda d: {p.relative_to(d).as_posix(): digest(p) for p in d.rglob("*") if p.is_file() and p.name != ".lock" and ".done" not in p.parts}
    a, b = tree(c.p("clips")), tree(c.p("ref"))
    if a != b:
        diff = sorted(set(a) ^ set(b)) or [k for k in a if a[k] != b.get(k)]
        raise Wrong(f"resumed clips differ from an uninterrupted run: {diff[:3]}")
    return "handled", f"{len(a)} files identical to an uninterrupted run"


@case("splice_two_hours", "splice", "a 2-hour 16 kHz talk: spliced, peak memory <= 1 GB")
def _(c):
    c.p("in").mkdir()
    long_wav(c.p("in", "long.wav"), 7200, HIGH)
    r = c.run("splice", *sets("data.input_dir=in", "data.output_dir=clips", "data.trim_seconds=0", "data.clip_seconds=10", "data.n_jobs=1"), "-q", timeout=300)
    return ok(r, f"{_manifest_rows(c.p('clips'))} clips, peak {r.peak_mb:.0f} MB, {r.seconds:.0f} s")


# ---- damaged tables: split (manifest.csv), train (train.csv), evaluate (test.csv)

DAMAGES = ("empty", "no_column", "text_seconds", "garbage")
NEEDED = {"manifest.csv": "talk", "splits/train.csv": "hr_path", "splits/test.csv": "source"}  # a column the command cannot do without


def _damage(path: Path, kind: str, column: str) -> None:
    rows = [ln.split(",") for ln in path.read_text().splitlines()]
    if kind == "garbage":
        path.write_bytes(np.random.default_rng(7).bytes(3000))
    elif kind == "empty":
        path.write_text("")
    else:
        i = rows[0].index(column if kind == "no_column" else "seconds")
        for row in rows[1:]:
            row[i] = "abc"
        if kind == "no_column":
            rows = [row[:i] + row[i + 1 :] for row in rows]
        path.write_text("\n".join(",".join(row) for row in rows) + "\n")


def _table_case(cmd: str, table: str, kind: str):
    def fn(c: Ctx):
        clips = copy(c, c.s.clips, "clips")
        _damage(clips / table, kind, NEEDED[table])
        if cmd == "split":
            r = c.run("split", *sets("data.output_dir=clips"), "-q")
        elif cmd == "train":
            r = c.run("train", *train_args("clips", "run"))
        else:
            r = c.run("evaluate", *eval_args(c, clips, "ev"))
        if cmd != "split" and kind == "text_seconds":  # a column it may not read: exit 0 is fine too
            return either(r, lambda: "ran", Path(table).name)
        return error(r, Path(table).name)

    what = f"missing column {NEEDED[table]}" if kind == "no_column" else kind.replace("_", " ")
    how = "clean error naming it, or exit 0 if it does not read that column" if cmd != "split" and kind == "text_seconds" else "clean error naming it"
    case(f"{cmd}_{Path(table).stem}_csv_{kind}", cmd, f"{table} {what}: {how}")(fn)


for _kind in DAMAGES:
    _table_case("split", "manifest.csv", _kind)
    _table_case("train", "splits/train.csv", _kind)
    _table_case("evaluate", "splits/test.csv", _kind)


@case("split_no_manifest", "split", "no manifest.csv: clean error")
def _(c):
    c.p("clips").mkdir()
    return error(c.run("split", *sets("data.output_dir=clips"), "-q"), "manifest.csv")


@case("split_blocked_output", "split", "clips/splits is a file: clean error")
def _(c):
    copy(c, c.s.clips, "clips")
    shutil.rmtree(c.p("clips", "splits"))
    c.p("clips", "splits").write_text("a file")
    return error(c.run("split", *sets("data.output_dir=clips"), "-q"), "splits")


@case("split_readonly_output", "split", "clips folder read-only: clean error")
def _(c):
    clips = copy(c, c.s.clips, "clips")
    shutil.rmtree(clips / "splits")
    prefix = c.mounted(clips, ro=True)
    return error(c.run("split", *sets(f"data.output_dir={clips}"), "-q", prefix=prefix), "splits", "clips")


@case("split_full_disk", "split", "clips folder on a full disk: clean error")
def _(c):
    prefix = c.mounted(c.p("disk"), size_kb=64, setup=f'cp "{c.s.clips}/manifest.csv" "$m"/ && (dd if=/dev/zero of="$m/fill" bs=1k 2>/dev/null; true);')
    return error(c.run("split", *sets(f"data.output_dir={c.p('disk')}"), "-q", prefix=prefix), "disk", words=("space", "full", "cannot write"))


# ---- train


@case("train_resume_ok", "train", "control: a small run resumed with more steps continues")
def _(c):
    copy(c, c.s.clips, "clips")
    copy(c, c.s.run, "run")
    return ok(c.run("train", *train_args("clips", "run", "training.max_steps=4"), "--resume"), "resumed to step 4")


def _ckpt_case(cid: str, expected: str, edit: Callable[[dict], None]):
    def fn(c: Ctx):
        copy(c, c.s.clips, "clips")
        run = copy(c, c.s.run, "run")
        damaged_checkpoint(run / "last.pt", run / "last.pt", edit)
        r = c.run("train", *train_args("clips", "run", "training.max_steps=4"), "--resume")
        return error(r, "last.pt")

    case(cid, "train", expected)(fn)


def _shape(ck):
    k = next(k for k, v in ck["model_state"].items() if v.ndim >= 2)
    ck["model_state"][k] = ck["model_state"][k][:1]


_ckpt_case("train_resume_step_text", "last.pt step = 'abc': clean error naming last.pt", lambda ck: ck.update(step="abc"))
_ckpt_case("train_resume_no_optimizer", "last.pt without its optimizer state: clean error", lambda ck: ck.pop("optimizer"))
_ckpt_case("train_resume_rng_empty", "last.pt with rng = []: clean error", lambda ck: ck.update(rng=[]))
_ckpt_case("train_resume_weight_shape", "last.pt with a weight of the wrong shape: clean error", _shape)
_ckpt_case("train_resume_history_text", "last.pt with history = 'x' and epochs_done = -5: clean error", lambda ck: ck.update(history="x", epochs_done=-5))
_ckpt_case("train_resume_scheduler_junk", "last.pt with scheduler = {'junk': 1}: clean error", lambda ck: ck.update(scheduler={"junk": 1}))


@case("train_batch_size_huge", "train", "training.batch_size=10**9: clean error naming it, or a run that ends well")
def _(c):
    copy(c, c.s.clips, "clips")
    r = c.run("train", *train_args("clips", "run", "training.batch_size=1000000000"))
    return either(r, lambda: need(c.p("run", "last.pt").is_file(), "exit 0 but no last.pt", "last.pt written"), "batch_size")


@case("train_bwe_hop_over_n_fft", "train", "bwe with hop 600 > n_fft 512: clean error naming the setting (tries model.bwe.* then model.*)")
def _(c):
    copy(c, c.s.clips, "clips")
    c.notes.append(f"[{BWE}hop accepted]")
    r = c.run("train", *train_args("clips", "run", bwe("hop=600"), bwe("n_fft=512")))
    blamed = re.findall(r"--set (\S+?):", " ".join(r.errors))
    if blamed and not any("hop" in k or "n_fft" in k for k in blamed):
        raise Wrong(f"the error blames --set {blamed[0]}: {r.errors[0][:110]}")
    return error(r, "hop", "n_fft")


@case("train_blocked_run_dir", "train", "training.run_dir under a file: clean error")
def _(c):
    copy(c, c.s.clips, "clips")
    c.p("runs").write_text("a file")
    return error(c.run("train", *train_args("clips", "runs/x")), "runs")


@case("train_full_disk", "train", "training.run_dir on a full 128 KB disk: clean error")
def _(c):
    copy(c, c.s.clips, "clips")
    prefix = c.mounted(c.p("disk"), size_kb=128)
    return error(c.run("train", *train_args("clips", c.p("disk")), prefix=prefix), "disk", words=("space", "full", "cannot write"))


@case("train_concurrent_same_run_dir", "train", "two trains on one run_dir at once: the second refuses")
def _(c):
    copy(c, c.s.clips, "clips")
    args = train_args("clips", "run")
    runs = [c.finish(p) for p in [c.start("train", *args) for _ in range(2)]]
    if all(r.rc == 0 for r in runs):  # one run's checkpoints silently replaced by the other's
        c.lost.append("both runs exit 0 into one run_dir: one's best.pt/last.pt silently replaced the other's")
    ok(next(r for r in runs if r.rc == 0))
    return error(next(r for r in runs if r.rc != 0), "run")


@case("train_sigint_first_epoch", "train", "Ctrl-C in the first epoch, then --resume: a checkpoint exists and the run continues")
def _(c):
    copy(c, c.s.clips, "clips")
    args = [
        *sets(
            "data.output_dir=clips",
            "training.run_dir=run",
            "model.name=bwe",
            bwe("hidden=64"),
            bwe("blocks=4"),
            "training.batch_size=1",
            "training.device=cpu",
            "training.epochs=2",
            "training.max_steps=20",
        )
    ]
    proc = c.start("train", *args)
    while proc.running() and not re.search(r"epoch 1/\d+:.*\| *[1-9]\d*/", proc.err_text()):  # a step of the first epoch done
        time.sleep(0.01)
    if not proc.running() or re.search(r"^epoch 1: ", proc.out_text() + proc.err_text(), re.M):
        raise Skip("skipped: the first epoch ended before Ctrl-C")
    proc.signal(signal.SIGINT, group=True)
    first = c.finish(proc)
    if not c.p("run", "last.pt").is_file():
        raise Wrong(f"exit {first.rc} after Ctrl-C, no last.pt: --resume cannot continue ({first.last()[:70]})")
    return ok(c.run("train", *args, "--resume", "--quiet"), "resumed")


@case("train_kill9_resume", "train", "kill -9 after the first checkpoint, --resume: all epochs done, history complete")
def _(c):
    copy(c, c.s.clips, "clips")
    args = train_args("clips", "run", "training.max_steps=null", "training.epochs=3")
    proc = c.start("train", *args)
    while proc.running() and not c.p("run", "last.pt").is_file():
        time.sleep(0.02)
    if not proc.running():
        raise Skip("skipped: the run ended before it could be killed")
    proc.signal(signal.SIGKILL)
    c.finish(proc)
    ok(c.run("train", *args, "--resume"))
    ck = _torch().load(c.p("run", "last.pt"), weights_only=True)
    epochs = [ln.split(",")[0] for ln in c.p("run", "history.csv").read_text().splitlines()[1:]]
    if ck["epochs_done"] != 3 or epochs != ["1", "2", "3"]:
        raise Wrong(f"after resume: epochs_done {ck['epochs_done']}, history epochs {epochs}")
    return "handled", f"3 epochs, step {ck['step']}"


# ---- evaluate, report, demo


@case("evaluate_blocked_output", "evaluate", "-o under a file: clean error")
def _(c):
    c.p("out").write_text("a file")
    return error(c.run("evaluate", *eval_args(c, c.s.clips, "out/ev")), "out")


@case("evaluate_readonly_output", "evaluate", "-o read-only: clean error")
def _(c):
    prefix = c.mounted(c.p("ro"), ro=True)
    return error(c.run("evaluate", *eval_args(c, c.s.clips, c.p("ro")), prefix=prefix), "ro")


@case("evaluate_full_disk", "evaluate", "-o on a full 32 KB disk: clean error")
def _(c):
    prefix = c.mounted(c.p("disk"), size_kb=32)
    return error(c.run("evaluate", *eval_args(c, c.s.clips, c.p("disk")), prefix=prefix), "disk", words=("space", "full", "cannot write"))


@case("evaluate_bad_input_folder", "evaluate", "--input folder with a good and three bad files: exit 1, one line each, the good one scored")
def _(c):
    write(c.p("in", "good.wav"), speech(3, HIGH), HIGH)
    c.p("in", "empty.wav").write_bytes(b"")
    c.p("in", "notes.flac").write_text("text\n" * 30)
    write(c.p("in", "one.wav"), np.full((1, 1), 0.1, np.float32), HIGH)
    r = c.run("evaluate", *eval_args(c, c.s.clips, "ev"), "--input", "in")
    if r.rc and not c.p("ev", "scores.csv").is_file():
        raise Wrong(f"the good file was not scored (exit {r.rc}: {r.last()[:70]})")
    return error(r, "empty.wav", "notes.flac")


@case("evaluate_nan_checkpoint", "evaluate", "a checkpoint with NaN weights: an error, not NaN scores with exit 0")
def _(c):
    def nan(ck):
        for v in ck["model_state"].values():
            if v.is_floating_point():
                v.fill_(float("nan"))

    ck = damaged_checkpoint(c.s.run / "best.pt", c.p("nan.pt"), nan)
    args = eval_args(c, c.s.clips, "ev")
    args[1] = ck
    r = c.run("evaluate", *args)
    if r.rc == 0:
        raise Wrong("exit 0: scores written for a model of NaN weights" + (" (a RuntimeWarning on stderr)" if "Warning" in r.err else ""))
    return error(r, "nan.pt", words=("nan", "finite"))


def _eval_copy(c: Ctx) -> Path:
    return copy(c, c.s.eval, "ev")


@case("report_missing_eval", "report", "--eval folder that does not exist: clean error")
def _(c):
    return error(c.run("report", "--eval", "nowhere", "-o", "rep", "-q"), "nowhere")


@case("report_damaged_scores", "report", "scores.csv garbage: clean error naming it")
def _(c):
    ev = _eval_copy(c)
    (ev / "scores.csv").write_bytes(np.random.default_rng(3).bytes(2000))
    return error(c.run("report", "--eval", "ev", "-o", "rep", "-q"), "scores.csv", "ev")


@case("report_damaged_eval_json", "report", "eval.json truncated: clean error naming it")
def _(c):
    ev = _eval_copy(c)
    (ev / "eval.json").write_text((ev / "eval.json").read_text()[:40])
    return error(c.run("report", "--eval", "ev", "-o", "rep", "-q"), "eval.json", "ev")


@case("report_blocked_output", "report", "-o under a file: clean error")
def _(c):
    _eval_copy(c)
    c.p("out").write_text("a file")
    return error(c.run("report", "--eval", "ev", "-o", "out/rep", "-q"), "out")


@case("report_readonly_output", "report", "-o read-only: clean error")
def _(c):
    _eval_copy(c)
    prefix = c.mounted(c.p("ro"), ro=True)
    return error(c.run("report", "--eval", "ev", "-o", c.p("ro"), "-q", prefix=prefix), "ro")


@case("report_full_disk", "report", "-o on a full 16 KB disk: clean error")
def _(c):
    _eval_copy(c)
    prefix = c.mounted(c.p("disk"), size_kb=16)
    return error(c.run("report", "--eval", "ev", "-o", c.p("disk"), "-q", prefix=prefix), "disk", words=("space", "full", "cannot write"))


@case("demo_blocked_workdir", "demo", "--workdir under a file: clean error")
def _(c):
    c.p("wd").write_text("a file")
    return error(c.run("demo", "--workdir", "wd/demo", "-q"), "wd")


@case("demo_readonly_workdir", "demo", "--workdir read-only: clean error")
def _(c):
    prefix = c.mounted(c.p("ro"), ro=True)
    return error(c.run("demo", "--workdir", c.p("ro"), "-q", prefix=prefix), "ro")


@case("demo_full_disk", "demo", "--workdir on a full 256 KB disk: clean error")
def _(c):
    prefix = c.mounted(c.p("disk"), size_kb=256)
    return error(c.run("demo", "--workdir", c.p("disk"), "-q", prefix=prefix), "disk", words=("space", "full", "cannot write"))


# ---- generate

for _value in ("nan", "0", "inf", "-1"):
    case(f"generate_seconds_{_value.replace('-', 'minus')}", "generate", f"--seconds {_value}: clean error naming --seconds")(
        lambda c, v=_value: error(c.run("generate", "g", "--talks", "1", "--seconds", v, "-q"), "--seconds", "seconds")
    )


@case("generate_talks_minus1", "generate", "--talks -1: clean error naming --talks")
def _(c):
    return error(c.run("generate", "g", "--talks", "-1", "--seconds", "1", "-q"), "--talks", "talks")


@case("generate_blocked_output", "generate", "out_dir under a file: clean error")
def _(c):
    c.p("g").write_text("a file")
    return error(c.run("generate", "g/x", "--talks", "1", "--seconds", "1", "-q"), "g")


# ---- settings and the command line


@case("cli_version", "pipeline", "pipeline --version prints the version")
def _(c):
    r = c.run("", "--version", settings=False)
    if r.rc != 0 or not re.search(r"\d+\.\d+", r.out + r.err):
        raise Wrong(f"exit {r.rc}: {r.last()[:90]}")
    return "handled", (r.out + r.err).strip().splitlines()[0]


@case("settings_missing_folder", "generate", "--settings naming a folder that does not exist: an error, not defaults")
def _(c):
    ok(c.run("generate", "g", "--talks", "1", "--seconds", "1", "-q"))  # control: runs with an empty settings folder
    r = c.run("generate", "g2", "--settings", "no_such_folder", "--talks", "1", "--seconds", "1", "-q", settings=False)
    return error(r, "no_such_folder")


@case("settings_deep_json", "split", "a settings file of deeply nested JSON: clean error naming the file")
def _(c):
    (c.settings / "data.json").write_text('{"a":' * 100000 + "1" + "}" * 100000)
    return error(c.run("split", "-q"), "data.json")


@case("settings_garbage", "split", "binary garbage as model.json: clean error naming the file")
def _(c):
    (c.settings / "model.json").write_bytes(b"\x00\xff\xfe" + np.random.default_rng(2).bytes(300))
    return error(c.run("split", "-q"), "model.json")


@case("set_misspelled_key", "split", "--set data.facter=2 suggests data.factor")
def _(c):
    r = c.run("split", "--set", "data.facter=2", "-q")
    verdict = error(r, "facter")
    if "data.factor" not in " ".join(r.errors).replace("data.facter", ""):
        raise Wrong(f"no suggestion of data.factor: {r.errors[0][:90]}")
    return verdict


@case("set_comma_list", "split", "--set training.speed=1.0,1.25 accepted as a list")
def _(c):
    r = c.run("split", *sets("data.output_dir=none", "training.speed=1.0,1.25", 'training.lowres_methods=["soxr"]', "training.crop_seconds=0.5"), "-q")
    if not any("manifest" in ln for ln in r.errors):
        raise Wrong(f"comma list refused: {(r.errors or [r.last()])[0][:100]}")
    return "handled", "settings accepted (split then stops: no manifest)"


@case("set_value_garbage", "split", "--set data.factor=abc: clean error naming data.factor")
def _(c):
    return error(c.run("split", "--set", "data.factor=abc", "-q"), "data.factor")


# --- setup, running, report -----------------------------------------------------------------------------------


def find_pipeline() -> list[str]:
    beside = Path(sys.executable).parent / "pipeline"
    found = beside if beside.is_file() else shutil.which("pipeline")
    if not found:
        sys.exit("error: no `pipeline` command; install the package (pip install -e .) or pass --pipeline")
    return [str(found)]


def build_shared(exe: list[str], root: Path, quiet: bool) -> Shared:
    global BWE
    s = Shared(exe, root)
    c = Ctx(root / "setup", s)
    for prefix in ("model.bwe.", "model."):
        r = c.run("split", "--set", f"{prefix}hidden=8", "--set", "data.output_dir=none", "-q")
        if "unknown key" not in r.err:
            BWE = prefix
            break
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    s.talks, s.big_talks, s.clips, s.run, s.eval = c.p("talks"), c.p("big_talks"), c.p("clips"), c.p("run"), c.p("eval")
    steps = [
        ("generate", ["talks", "--talks", "5", "--seconds", "4", "-q"]),
        ("generate", ["big_talks", "--talks", "6", "--seconds", "20", "--seed", "1", "-q"]),
        ("splice", [*splice_args("talks", "clips"), "-q"]),
        ("split", [*sets("data.output_dir=clips"), "-q"]),
        ("train", train_args("clips", "run")),
        ("evaluate", eval_args(c, c.p("clips"), "eval")),
    ]
    for cmd, args in steps:
        t0 = time.monotonic()
        r = c.run(cmd, *args, timeout=300)
        if r.rc != 0:
            sys.stderr.write(f"error: cannot make the shared fixtures: `pipeline {cmd}` exited {r.rc}\n{r.err[-3000:]}\n")
            sys.exit(2)
        say(f"setup: pipeline {cmd} ({time.monotonic() - t0:.1f} s)")
    probe = subprocess.run(["unshare", "-m" if os.geteuid() == 0 else "-rm", "sh", "-c", f'mount -t tmpfs -o size=64k tmpfs "{root}" && umount "{root}"'], capture_output=True)
    s.tmpfs = probe.returncode == 0
    if os.geteuid() == 0 and shutil.which("setpriv"):
        drop = "-dac_override,-dac_read_search"
        no_dac = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", "--"]
        probe = subprocess.run([*no_dac, "sh", "-c", f'touch "{root}/probe" && chmod 0 "{root}/probe" && ! cat "{root}/probe" 2>/dev/null'], capture_output=True)
        if probe.returncode == 0:
            s.no_dac = no_dac
    return s


@dataclass
class Result:
    case: Case
    outcome: str
    detail: str
    seconds: float
    peak_mb: float


def run_case(k: Case, shared: Shared) -> Result:
    folder = Path(tempfile.mkdtemp(prefix=k.id[:40] + "_", dir=shared.root))
    c = Ctx(folder, shared)
    t0 = time.monotonic()
    try:
        outcome, detail = k.fn(c)
    except Wrong as e:
        outcome, detail = "wrong", str(e)
    except Skip as e:
        outcome, detail = "skipped", str(e)
    except Exception as e:  # noqa: BLE001  a fault of the battery itself, or an output it cannot read
        outcome, detail = "bench error", f"{type(e).__name__}: {e}"
    peak = max((r.peak_mb for r in c.runs), default=0.0)
    lost = c.check_protected()
    hung = [r for r in c.runs if r.timed_out]
    tb = [r for r in c.runs if "Traceback (most recent call last)" in r.err]
    fat = [r for r in c.runs if r.peak_mb > MEMORY_LIMIT_MB or r.runaway]
    if lost:
        outcome, detail = "lost", "; ".join(lost)[:200]
    elif hung:
        outcome, detail = "hang", f"killed after {hung[0].seconds:.0f} s (peak {hung[0].peak_mb:.0f} MB)"
    elif tb:
        exc = [ln for ln in tb[0].err.splitlines() if ln.strip() and not ln.startswith((" ", "\t"))]
        outcome, detail = "traceback", (exc[-1] if exc else "Traceback")[:200]
    elif fat:
        r = fat[0]
        outcome, detail = "wrong", f"peak memory {'over ' + str(RUNAWAY_MB) + ' MB, killed' if r.runaway else f'{r.peak_mb:.0f} MB'} > {MEMORY_LIMIT_MB} MB"
    if not shared.keep:
        _remove(folder)
    detail = squeeze(" ".join([*c.notes, detail]).replace(f"{folder}/", "").replace(f"{shared.root}/", ""))
    return Result(k, outcome, detail, time.monotonic() - t0, peak)


def _remove(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        try:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        except OSError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def print_table(results: list[Result], width: int = 150) -> None:
    """One row a case: id, command, what is expected (in full with --list), outcome, seconds, the
    largest peak memory of its commands, and one line of detail."""
    idw = max(len(r.case.id) for r in results)
    print(f"{'case':<{idw}}  {'command':<9} {'expected':<44} {'outcome':<11} {'s':>5} {'MB':>5}  detail")
    for r in results:
        expected = r.case.expected if len(r.case.expected) <= 44 else r.case.expected[:42] + ".."
        print(f"{r.case.id:<{idw}}  {r.case.command:<9} {expected:<44} {r.outcome:<11} {r.seconds:5.1f} {r.peak_mb:5.0f}  {r.detail[:width]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", metavar="PATTERN", help="cases whose id or command contains PATTERN (or matches it as a glob)")
    ap.add_argument("--list", action="store_true", help="list the cases and what each expects")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="cases run at once (default 1)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when any case is traceback, hang, wrong or lost")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    ap.add_argument("--pipeline", metavar="CMD", help="the command to test (default: the installed `pipeline`), e.g. 'python -m pipeline.cli'")
    ap.add_argument("--tmp", metavar="DIR", help="where the temporary folders go (default: the system's)")
    args = ap.parse_args()

    cases = [k for k in CASES if not args.only or args.only in k.id or args.only == k.command or fnmatch.fnmatch(k.id, args.only)]
    if args.list:
        for k in cases:
            print(f"{k.id:<40} {k.command:<9} {k.expected}")
        print(f"{len(cases)} cases")
        return 0
    if not cases:
        print(f"error: no case matches {args.only!r} (--list shows them)", file=sys.stderr)
        return 2
    exe = shlex.split(args.pipeline) if args.pipeline else find_pipeline()
    if exe[0] in ("python", "python3"):  # this interpreter, not a shim
        exe[0] = sys.executable
    root = Path(tempfile.mkdtemp(prefix="bench_reliability_", dir=args.tmp))
    root.chmod(0o755)
    start = time.monotonic()
    try:
        shared = build_shared(exe, root, quiet=False)
        if args.jobs > 1:  # N torch processes each spinning every core's thread would crawl
            shared.env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // args.jobs))}
        shared.keep = args.keep
        done = [0]
        lock = threading.Lock()

        def one(k: Case) -> Result:
            r = run_case(k, shared)
            with lock:
                done[0] += 1
                print(f"[{done[0]}/{len(cases)}] {k.id}: {r.outcome} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)
            return r

        fixtures = Ctx(root / "fixtures_check", shared)
        fixtures.protect(root / "setup")
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            results = list(pool.map(one, cases))
        touched = fixtures.check_protected()
    finally:
        if not args.keep:
            _remove(root)
    print_table(results)
    counts = {o: sum(r.outcome == o for r in results) for o in OUTCOMES}
    print("\n" + ", ".join(f"{o}: {n}" for o, n in counts.items() if n or o in BAD or o in ("clean error", "handled")))
    print(f"{len(results)} cases in {time.monotonic() - start:.0f} s (-j {args.jobs}); pipeline = {' '.join(exe)}" + (f"; kept {root}" if args.keep else ""))
    if touched:
        print(f"note: a case changed the shared fixtures (read-only to every case): {'; '.join(touched[:3])}")
    if shared.no_dac is None and os.geteuid() == 0:
        print("note: root, and setpriv cannot drop CAP_DAC_OVERRIDE: permission cases are skipped")
    bad = sum(counts[o] for o in BAD) + counts["bench error"]
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
