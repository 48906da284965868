"""``upsampling.backend=dask`` (:mod:`audio_superres.pipeline.inference.cluster`): upsample through
a real local Dask cluster (the ``cluster`` fixture of tests/conftest.py) gives the local run's
files, and a worker killed mid-run loses nothing."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
import soxr
import torch

from audio_superres.pipeline.inference import load_upsampler, upsample_paths
from audio_superres.settings import UpsamplingSettings

from ...conftest import kill_one_worker_when, same_tree, write_talk
from ..conftest import save_tiny_checkpoint


def call(path: Path, seconds: float, seed: int) -> Path:
    """Generated speech at 4 kHz, the input rate of the shipped speech-4k model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = soxr.resample(sf.read(str(write_talk(path.with_suffix(".src.flac"), seconds, seed=seed)))[0], 16000, 4000)
    path.with_suffix(".src.flac").unlink()
    sf.write(str(path), x, 4000)
    return path


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
