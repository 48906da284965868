"""Helpers for the training tests: a tiny network's settings and ``pipeline train`` arguments over
a test module's clips (the ``clips`` fixture of tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

from audio_superres.settings import load_settings

from ...conftest import empty_settings

TINY = ["model.name=audiounet", "model.width=8", "model.depth=2"]


def settings_for(clips: Path, run_dir: Path, *overrides: str):
    """4 clips a batch: 3 steps an epoch."""
    base = [f"data.output_dir={clips}", f"training.run_dir={run_dir}", "training.batch_size=4", "training.num_workers=0", "training.warmup_steps=2", *TINY]
    return load_settings(None, [*base, *overrides])


def cli_args(clips: Path, run_dir: Path, *overrides: str) -> list[str]:
    args = ["--settings", str(empty_settings(run_dir.parent / "no_settings"))]
    for o in [f"data.output_dir={clips}", f"training.run_dir={run_dir}", "training.batch_size=4", "training.num_workers=0", *TINY, *overrides]:
        args += ["--set", o]
    return args
