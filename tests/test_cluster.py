"""``backend=dask``: splice and upsample through a real local Dask cluster (a scheduler and two
worker processes of one thread each on 127.0.0.1, started with the ``dask scheduler`` and ``dask
worker`` commands), against the local backend; and the one-line errors without one."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import soundfile as sf
import soxr
import torch

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import UpsampleError, load_upsampler, upsample_paths
from audio_superres.preprocessing import cluster as cluster_module
from audio_superres.preprocessing.splice import SpliceError, splice
from audio_superres.settings import SettingsError, UpsamplingSettings, load_settings

from .conftest import data_settings, empty_settings, write_talk
from .test_inference import save_tiny_checkpoint


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("distributed")
    with cluster_module.local_cluster(n_workers=2, threads=1) as address:
        yield address


def workers(address: str, n: int = 2) -> dict[str, int]:
    """The worker processes' pids, once ``n`` workers are up (a killed one comes back under its nanny)."""
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        client.wait_for_workers(n, timeout=60)
        return client.run(os.getpid)


def talks(folder: Path, n: int, seconds: float = 4.0) -> Path:
    for i in range(n):
        write_talk(folder / f"talk{i}.flac", seconds, seed=i)
    return folder


def same_tree(a: Path, b: Path, pattern: str) -> list[str]:
    """The files matching ``pattern`` under ``a``, after checking that ``b`` holds the same bytes."""
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob(pattern))
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob(pattern))
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names


def call(path: Path, seconds: float, seed: int) -> Path:
    """Generated speech at 4 kHz, the input rate of the shipped speech-4k model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = soxr.resample(sf.read(str(write_talk(path.with_suffix(".src.flac"), seconds, seed=seed)))[0], 16000, 4000)
    path.with_suffix(".src.flac").unlink()
    sf.write(str(path), x, 4000)
    return path


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


def test_settings_default_to_local_and_take_an_address(tmp_path):
    settings = load_settings(empty_settings(tmp_path), [])
    assert (settings.data.backend, settings.upsampling.backend, settings.data.dask_address) == ("local", "local", None)
    settings = load_settings(empty_settings(tmp_path), ["data.backend=dask", "data.dask_address=tcp://127.0.0.1:8786", "upsampling.backend=dask"])
    assert (settings.data.backend, settings.data.dask_address, settings.upsampling.backend) == ("dask", "tcp://127.0.0.1:8786", "dask")
    with pytest.raises(SettingsError, match="backend"):
        load_settings(empty_settings(tmp_path), ["data.backend=spark"])


def test_without_dask_one_line_error_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now fails
    corpus = talks(tmp_path / "talks", 1)
    sets = ["--settings", str(empty_settings(tmp_path / "none")), "--set", f"data.input_dir={corpus}", "--set", f"data.output_dir={tmp_path / 'clips'}"]
    assert main(["splice", *sets, "--set", "data.backend=dask", "--set", "data.dask_address=tcp://127.0.0.1:8786", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == 'error: data.backend=dask needs Dask, which is not installed: pip install -e ".[cluster]" (or pip install "dask[distributed]")\n'
    assert main(["upsample", str(corpus), "-o", str(tmp_path / "up"), "--set", "upsampling.backend=dask", "-q"]) == 2
    assert capsys.readouterr().err.startswith("error: upsampling.backend=dask needs Dask, which is not installed: pip install")


def test_no_address_or_no_scheduler_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    corpus = talks(tmp_path / "talks", 1)
    with pytest.raises(SpliceError, match=r"^data.backend=dask needs data.dask_address, the scheduler's address: --set data.dask_address=tcp://HOST:8786$"):
        splice(data_settings(corpus, tmp_path / "clips", backend="dask"), quiet=True)
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 0.5)
    with pytest.raises(UpsampleError, match=r"^tcp://127.0.0.1:9: no Dask scheduler answered \(upsampling.dask_address: .*\); start one with `dask scheduler`"):
        upsample_paths([corpus], tmp_path / "up", UpsamplingSettings(backend="dask", dask_address="tcp://127.0.0.1:9", device="cpu"), quiet=True)


def test_splice_through_the_cluster_is_the_local_run(cluster, tmp_path):
    corpus = talks(tmp_path / "talks", 5)
    (corpus / "junk.flac").write_bytes(os.urandom(3000))
    local = splice(data_settings(corpus, tmp_path / "local", n_jobs=2), quiet=True)
    dask = splice(data_settings(corpus, tmp_path / "dask", backend="dask", dask_address=cluster), quiet=True)
    assert (dask.done, dask.failed, dask.clips) == (local.done, local.failed, local.clips) == (5, 1, local.clips)
    for table in ("manifest.csv", "failures.csv"):
        assert (tmp_path / "dask" / table).read_text() == (tmp_path / "local" / table).read_text()
    assert len(same_tree(tmp_path / "local", tmp_path / "dask", "*.flac")) == 2 * local.clips
    # resume works across backends: the cluster takes the local run's records and reads nothing again
    again = splice(data_settings(corpus, tmp_path / "local", backend="dask", dask_address=cluster), quiet=True)
    assert (again.resumed, again.done) == (5, 5)
    assert (tmp_path / "local" / "manifest.csv").read_text() == (tmp_path / "dask" / "manifest.csv").read_text()


def test_upsample_through_the_cluster_gives_the_same_files(cluster, tmp_path):
    folder = tmp_path / "in"
    for i in range(3):  # 4 kHz speech: the shipped speech-4k model, loaded by every worker
        call(folder / "calls" / f"call{i}.wav", 2.0, seed=i)
    write_talk(folder / "wide.flac", 2.0, seed=9)  # 16 kHz full band: copied in band
    (folder / "bad.wav").write_bytes(b"RIFF junk")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.pt")
    local_set = UpsamplingSettings(device="cpu")
    dask_set = UpsamplingSettings(device="cpu", backend="dask", dask_address=cluster)
    forced, _ = load_upsampler(ckpt, local_set, "cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' count (dask sets OMP_NUM_THREADS=1): torch's CPU sums depend on it
    try:
        runs = {
            "local": upsample_paths([folder], tmp_path / "local", local_set, quiet=True),
            "dask": upsample_paths([folder], tmp_path / "dask", dask_set, quiet=True),
            "local_ckpt": upsample_paths([folder / "calls"], tmp_path / "local_ckpt", local_set, forced, quiet=True),
            "dask_ckpt": upsample_paths([folder / "calls"], tmp_path / "dask_ckpt", dask_set, forced, checkpoint=ckpt, quiet=True),
            "dask_sent": upsample_paths([folder / "calls"], tmp_path / "dask_sent", dask_set, forced, quiet=True),  # no path: the model itself
        }
    finally:
        torch.set_num_threads(threads)
    assert (runs["dask"].done, runs["dask"].failed, runs["dask"].routes) == (runs["local"].done, runs["local"].failed, runs["local"].routes)
    assert runs["local"].routes == {"speech-4k": 3, "copied in band": 1} and runs["local"].failed == 1
    assert len(same_tree(tmp_path / "local", tmp_path / "dask", "*.wav")) == 4
    for name in ("dask_ckpt", "dask_sent"):
        assert runs[name].done == 3 and len(same_tree(tmp_path / "local_ckpt", tmp_path / name, "*.wav")) == 3
    assert not list(tmp_path.rglob(".*.tmp*"))
    # a rerun finds every output done and sends nothing
    assert upsample_paths([folder], tmp_path / "dask", dask_set, quiet=True).skipped == 4


def test_killing_a_worker_mid_splice_loses_nothing(cluster, tmp_path):
    corpus = talks(tmp_path / "talks", 12, seconds=6.0)
    reference = splice(data_settings(corpus, tmp_path / "local", n_jobs=2), quiet=True)
    records = tmp_path / "dask" / ".done"
    seen = kill_one_worker_when(cluster, lambda: records.is_dir() and len(list(records.glob("*.json"))) >= 2, (tmp_path / "dask" / "manifest.csv").exists)
    summary = splice(data_settings(corpus, tmp_path / "dask", backend="dask", dask_address=cluster), quiet=True)
    seen["thread"].join()
    assert seen["mid_run"]
    assert (summary.done, summary.failed, summary.clips) == (12, 0, reference.clips)
    assert (tmp_path / "dask" / "manifest.csv").read_text() == (tmp_path / "local" / "manifest.csv").read_text()
    same_tree(tmp_path / "local", tmp_path / "dask", "*.flac")
    assert not list((tmp_path / "dask").rglob(".*.tmp*"))


def test_killing_a_worker_mid_upsample_loses_nothing(cluster, tmp_path):
    folder = tmp_path / "in"
    for i in range(6):
        call(folder / f"call{i}.wav", 3.0, seed=i)
    out = tmp_path / "dask"
    seen = kill_one_worker_when(cluster, lambda: out.is_dir() and len(list(out.glob("*.wav"))) >= 1, lambda: len(list(out.glob("*.wav"))) == 6)
    summary = upsample_paths([folder], out, UpsamplingSettings(device="cpu", backend="dask", dask_address=cluster), quiet=True)
    seen["thread"].join()
    assert seen["mid_run"]
    assert (summary.done, summary.failed) == (6, 0)
    assert sorted(p.name for p in out.iterdir()) == [f"call{i}.wav" for i in range(6)]
    for p in out.iterdir():
        assert sf.info(str(p)).frames == 4 * sf.info(str(folder / p.name)).frames
