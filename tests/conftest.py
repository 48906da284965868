"""Shared helpers: generated talks (no real recordings needed), the optional real-data folder, one
torch thread for a test module, and a local Dask cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audio_superres.preprocessing import cluster as cluster_module
from audio_superres.preprocessing.synth import synth_speech
from audio_superres.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PIPELINE_SHARED_DATA", REPO.parent / "shared" / "data"))


def write_talk(path: Path, seconds: float, seed: int = 0, sample_rate: int = 16000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), synth_speech(seconds, sample_rate, seed=seed), sample_rate, subtype=subtype)
    return path


def empty_settings(folder: Path) -> Path:
    """A settings folder with no files in it: every setting at its built-in default."""
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def data_settings(input_dir: Path, output_dir: Path, **changes) -> DataSettings:
    """Small-corpus settings: 1 s trim, 2 s clips, serial unless told otherwise."""
    base = {"input_dir": input_dir, "output_dir": output_dir, "trim_seconds": 1.0, "n_jobs": 1}
    base.update(changes)
    return DataSettings(**base)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Training clips for a test module: 5 talks of 4 s -> 20 clips of 0.5 s; by talk: 12 train
    (3 steps an epoch at batch 4), 4 val, 4 test."""
    from audio_superres.preprocessing.splice import splice
    from audio_superres.preprocessing.split import split

    root = tmp_path_factory.mktemp("train_clips")
    for i in range(5):
        write_talk(root / "talks" / f"talk_{i}.flac", 4.0, seed=i)
    data = data_settings(root / "talks", root / "clips", clip_seconds=0.5)
    splice(data, quiet=True)
    split(root / "clips", data.splits, quiet=True)
    return root / "clips"


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "MANIFEST.csv").is_file():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


def tone(freq: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: ``pytestmark = pytest.mark.usefixtures("one_thread")``,
    set up before the module's own module-scoped fixtures (a run trained there and one resumed in a
    test then do the same arithmetic). Tests run beside other processes on few cores, where torch's
    OpenMP threads wait on each other ten times longer than one thread computes, and tiny tensors
    gain nothing from a second thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cluster():
    """A local Dask cluster for a test module: a scheduler and two worker processes of one thread each
    on 127.0.0.1 (skipped without Dask); its address."""
    pytest.importorskip("distributed")
    with cluster_module.local_cluster(n_workers=2, threads=1) as address:
        yield address


def workers(address: str, n: int = 2) -> dict[str, int]:
    """The worker processes' pids, once ``n`` workers are up (a killed one comes back under its nanny)."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=60)
        return client.run(os.getpid)


def same_tree(a: Path, b: Path, pattern: str) -> list[str]:
    """The files matching ``pattern`` under ``a``, after checking that ``b`` holds the same bytes."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob(pattern))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob(pattern))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def kill_one_worker_when(address: str, ready, finished) -> dict:
    """In the background: once ``ready()``, SIGKILL one worker process (mid-file: each is busy).
    Its nanny starts a new one, which joins the run when it is up."""
    pid = next(iter(workers(address).values()))
    seen: dict = {}

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(pid, signal.SIGKILL)
        seen["mid_run"] = ready() and not finished()
        seen["killed"] = pid

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    seen["thread"] = thread
    return seen
