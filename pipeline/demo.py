"""``pipeline demo``: the whole workflow on generated talks, with nothing to download.

Writes under ``workdir``: ``talks/`` (10 synthetic talks of 40 s, one speaker each), ``clips/``
(spliced clip pairs, ``manifest.csv`` and ``splits/``). Trimming is 2 s instead of a TED talk's 30 s
because the generated talks have no intro to cut.
"""

from __future__ import annotations

from pathlib import Path

from preprocessing.splice import splice
from preprocessing.split import split
from preprocessing.synth import generate_talks

from .settings import Settings

DEMO_TALKS = 10
DEMO_SECONDS = 40.0


def run_demo(workdir: Path, settings: Settings, quiet: bool = False) -> int:
    talks_dir, clips_dir = workdir / "talks", workdir / "clips"
    if not (talks_dir.is_dir() and len(list(talks_dir.glob("talk_*.flac"))) == DEMO_TALKS):
        if not quiet:
            print(f"demo: generating {DEMO_TALKS} talks of {DEMO_SECONDS:g} s in {talks_dir}")
        generate_talks(talks_dir, DEMO_TALKS, DEMO_SECONDS, settings.data.sample_rate, seed=settings.data.seed)
    data = settings.data.model_copy(update={"input_dir": talks_dir, "output_dir": clips_dir, "trim_seconds": 2.0})
    summary = splice(data, quiet=quiet)
    split(clips_dir, data.splits, data.split_by, data.seed, quiet=quiet)
    if not quiet:
        print(f"demo: clips and manifest in {clips_dir}, splits in {clips_dir / 'splits'}")
    return 1 if summary.failed else 0
