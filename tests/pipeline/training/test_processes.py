"""Training in several processes (:mod:`audio_superres.pipeline.training.processes`): DDP on CPU
with two processes."""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

import audio_superres.pipeline.training.train as train_module
from audio_superres.models.checkpoint import read_checkpoint

from .conftest import settings_for

pytestmark = pytest.mark.usefixtures("one_thread")


def _ddp_worker(rank: int, port: int, settings, result_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    summary = train_module.train(settings, quiet=True)
    Path(result_dir, f"rank{rank}").write_text(str(summary.steps))


def test_ddp_on_cpu_with_two_processes(clips, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    settings = settings_for(clips, run, "training.epochs=2", "training.batch_size=2")
    ctx = multiprocessing.get_context("fork")  # the children start with everything imported: seconds, not tens
    procs = [ctx.Process(target=_ddp_worker, args=(rank, port, settings, str(tmp_path))) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    # each process takes 2 of the 12 train clips a step: 3 steps an epoch, as one process with 4
    assert (tmp_path / "rank0").read_text() == (tmp_path / "rank1").read_text() == "6"
    checkpoint = read_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 6 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # own dropout streams
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert math.isfinite(checkpoint["best_val_loss"])
