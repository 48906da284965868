"""Splice and upsample throughput locally and through a local Dask cluster of 1 and 2 workers, as
ratios to the local backend in one run.

    pip install -e ".[cluster]"
    python benchmarks/bench_scale.py [--talks 16 --talk-seconds 60] [--calls 16 --call-seconds 40] [--repeats 3]

The clusters are started as a user would start them, on 127.0.0.1 (``dask scheduler``, then ``dask
worker --nworkers N --nthreads 1``; :func:`preprocessing.cluster.local_cluster`), both kept up for
the whole run. The local backend is today's default: splice with joblib threads over every core
(``data.n_jobs=-1``), upsample one file at a time with torch over every core. The inputs are
generated: ``--talks`` speech-like talks at 16 kHz (FLAC) for splice, ``--calls`` files at 4 kHz
(WAV, the shipped speech-4k model's input) for upsample, each stage writing to a fresh folder.

Each (stage, backend) runs once unmeasured first (a running cluster's workers have imported the
package and loaded the model before the work that matters; a cold worker pays that once, shown as
"first run"), then ``--repeats`` times with the backends alternating, so that a busy machine slows
them alike. Printed: the median wall time, the throughput (seconds of audio per second) and its
ratio to the local backend's. Outputs are compared too: splice's manifest and clips must be the same
bytes; upsample's outputs are the same bytes where torch runs with as many threads (a 1-thread
worker against a local run over every core differ in the last bits, as any two thread counts do).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from audio_superres.pipeline.inference import upsample_paths
from audio_superres.preprocessing.cluster import local_cluster
from audio_superres.preprocessing.splice import splice
from audio_superres.preprocessing.synth import generate_talks
from audio_superres.settings import DataSettings, UpsamplingSettings


def write_calls(folder: Path, talks: list[Path], n: int, seconds: float) -> float:
    """``n`` 4 kHz WAV files of ``seconds`` cut from the talks (tiled when short); their total seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n):
        x, rate = sf.read(str(talks[k % len(talks)]), dtype="float32")
        x = np.tile(x, int(np.ceil(seconds * rate / len(x))))[: int(seconds * rate)]
        sf.write(str(folder / f"call_{k:03d}.wav"), soxr.resample(x, rate, 4000, "HQ"), 4000, subtype="PCM_16")
    return n * seconds


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(clients: list) -> float:
    """CPU seconds spent so far by this process and every scheduler and worker of the clusters."""
    total = _cpu()
    for client in clients:
        total += sum(client.run(_cpu).values()) + client.run_on_scheduler(_cpu)
    return total


def same_bytes(a: Path, b: Path, pattern: str) -> bool:
    names = sorted(p.relative_to(a) for p in a.rglob(pattern))
    return names == sorted(p.relative_to(b) for p in b.rglob(pattern)) and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--talks", type=int, default=16, help="talks to splice")
    ap.add_argument("--talk-seconds", type=float, default=60.0)
    ap.add_argument("--calls", type=int, default=16, help="files to upsample")
    ap.add_argument("--call-seconds", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stages", nargs="+", choices=["splice", "upsample"], default=["splice", "upsample"])
    args = ap.parse_args()

    from distributed import Client

    work = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    runs = 0

    def splice_once(address: str | None) -> Path:
        out = work / f"clips_{runs}"
        extra = {"backend": "dask", "dask_address": address} if address else {}
        summary = splice(DataSettings(input_dir=work / "talks", output_dir=out, trim_seconds=1.0, n_jobs=-1, **extra), quiet=True)
        if summary.failed:
            raise SystemExit(f"splice on {address or 'local'}: {summary.failures[0]}")
        return out

    def upsample_once(address: str | None) -> Path:
        out = work / f"up_{runs}"
        extra = {"backend": "dask", "dask_address": address} if address else {}
        summary = upsample_paths([work / "calls"], out, UpsamplingSettings(device="cpu", **extra), quiet=True)
        if summary.failed:
            raise SystemExit(f"upsample on {address or 'local'}: {summary.errors[0]}")
        return out

    stages = {"splice": splice_once, "upsample": upsample_once}
    stages = {k: v for k, v in stages.items() if k in args.stages}
    seconds = {"splice": args.talks * args.talk_seconds, "upsample": args.calls * args.call_seconds}
    first: dict[tuple[str, str], float] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    same: dict[tuple[str, str], bool] = {}
    try:
        talks = generate_talks(work / "talks", args.talks, args.talk_seconds)
        write_calls(work / "calls", talks, args.calls, args.call_seconds)
        with local_cluster(1) as one, local_cluster(2) as two, Client(one, set_as_default=False) as c1, Client(two, set_as_default=False) as c2:
            backends = {"local": None, "dask, 1 worker": one, "dask, 2 workers": two}

            def timed(once, address) -> tuple[float, float, Path]:
                nonlocal runs
                runs += 1
                cpu, t = cpu_seconds([c1, c2]), time.perf_counter()
                out = once(address)
                return time.perf_counter() - t, cpu_seconds([c1, c2]) - cpu, out

            for stage, once in stages.items():
                reference = None
                for name, address in backends.items():
                    first[stage, name], _, out = timed(once, address)
                    if reference is None:
                        reference = out
                    else:
                        same[stage, name] = same_bytes(reference, out, "*.flac" if stage == "splice" else "*.wav")
                        if stage == "splice":
                            same[stage, name] &= (reference / "manifest.csv").read_text() == (out / "manifest.csv").read_text()
                        shutil.rmtree(out)
                    walls[stage, name], cpus[stage, name] = [], []
                for r in range(args.repeats):
                    order = list(backends.items())
                    order = order[r % len(order) :] + order[: r % len(order)]  # who goes first rotates
                    for name, address in order:
                        wall, cpu, out = timed(once, address)
                        walls[stage, name].append(wall)
                        cpus[stage, name].append(cpu)
                        shutil.rmtree(out)
                shutil.rmtree(reference)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"splice: {args.talks} talks x {args.talk_seconds:g} s at 16 kHz; upsample: {args.calls} files x {args.call_seconds:g} s at 4 kHz (speech-4k); "
        f"median of {args.repeats}; {os.cpu_count()} cores, shared with whatever else runs"
    )
    print(f"{'stage':<9} {'backend':<16} {'first s':>8} {'wall s':>7} {'x real time':>11} {'vs local':>9} {'CPU s':>6} {'CPU vs local':>12}  output")
    for stage in stages:
        local_wall, local_cpu = statistics.median(walls[stage, "local"]), statistics.median(cpus[stage, "local"])
        for name in backends:
            wall, cpu = statistics.median(walls[stage, name]), statistics.median(cpus[stage, name])
            if name == "local":
                note = "(reference)"
            elif same[stage, name]:
                note = "identical"
            else:
                note = "DIFFERENT" if stage == "splice" else "last bits differ (1 torch thread per worker, all cores locally)"
            print(f"{stage:<9} {name:<16} {first[stage, name]:>8.2f} {wall:>7.2f} {seconds[stage] / wall:>11.1f} {local_wall / wall:>8.2f}x {cpu:>6.1f} {cpu / local_cpu:>11.2f}x  {note}")


if __name__ == "__main__":
    main()
