"""``data.backend=dask`` (:mod:`audio_superres.preprocessing.cluster`): splice through a real local
Dask cluster (a scheduler and two worker processes of one thread each on 127.0.0.1, started with the
``dask scheduler`` and ``dask worker`` commands: the ``cluster`` fixture of tests/conftest.py)
against the local backend, a worker killed mid-splice; and the one-line errors without Dask or
without a scheduler, for splice and upsample alike."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import UpsampleError, upsample_paths
from audio_superres.preprocessing import cluster as cluster_module
from audio_superres.preprocessing.splice import SpliceError, splice
from audio_superres.settings import UpsamplingSettings

from ..conftest import data_settings, empty_settings, kill_one_worker_when, same_tree, write_talk


def talks(folder: Path, n: int, seconds: float = 4.0) -> Path:
    for i in range(n):
        write_talk(folder / f"talk{i}.flac", seconds, seed=i)
    return folder


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
