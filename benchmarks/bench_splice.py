"""Splice speed on the real talks, as a multiple of real time, beside the floor (decoding alone).

    python benchmarks/bench_splice.py [--input ../shared/data/speech/talks] [--n-jobs -1] [--repeats 3]

For each repeat: decode every file (the floor: no stage can be faster than reading its input), then
splice them into a fresh output folder, once on the disk (the system temporary folder) and once on
/dev/shm (memory) when it exists, which separates the pipeline's own cost from the file system's.
Prints each figure's median over the repeats. Both are warm-cache figures: a first read from a cold
disk is slower for everything alike.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf

from audio_superres.preprocessing.splice import find_sources, splice
from audio_superres.settings import DataSettings

REPO = Path(__file__).resolve().parents[1]


def decode_all(paths: list[Path]) -> float:
    seconds = 0.0
    for p in paths:
        x, rate = sf.read(str(p), dtype="float32")
        seconds += len(x) / rate
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=Path, default=REPO.parent / "shared" / "data" / "speech" / "talks")
    ap.add_argument("--n-jobs", type=int, default=-1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    paths = [s.path for s in find_sources(args.input)]
    audio_seconds = decode_all(paths)  # warms the page cache for every run below alike
    places = {"disk": Path(tempfile.gettempdir())}
    if Path("/dev/shm").is_dir():
        places["memory"] = Path("/dev/shm")
    times: dict[str, list[float]] = {"decode": [], **{k: [] for k in places}}
    for _ in range(args.repeats):
        t = time.perf_counter()
        decode_all(paths)
        times["decode"].append(time.perf_counter() - t)
        for name, parent in places.items():
            out = Path(tempfile.mkdtemp(prefix="bench_splice_", dir=parent))
            settings = DataSettings(input_dir=args.input, output_dir=out, n_jobs=args.n_jobs)
            t = time.perf_counter()
            summary = splice(settings, quiet=True)
            times[name].append(time.perf_counter() - t)
            shutil.rmtree(out)
    floor = statistics.median(times["decode"])
    print(f"{len(paths)} files, {audio_seconds / 3600:.2f} h of audio; n_jobs={args.n_jobs}; {summary.clips} clips; median of {args.repeats}")
    print(f"{'what':<24} {'wall s':>8} {'x real time':>12} {'x floor time':>13}")
    print(f"{'decode only (floor)':<24} {floor:>8.2f} {audio_seconds / floor:>12.0f} {1.0:>13.2f}")
    for name in places:
        wall = statistics.median(times[name])
        label = f"splice -> {name}"
        print(f"{label:<24} {wall:>8.2f} {audio_seconds / wall:>12.0f} {wall / floor:>13.2f}")


if __name__ == "__main__":
    main()
