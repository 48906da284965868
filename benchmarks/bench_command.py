"""``pipeline upsample`` timed as a user runs it: the whole command (Python start, torch import, model
load, read, upsample, write), on one talk or a folder of talks at the model's input rate.

    python benchmarks/bench_command.py                               # one 10-minute talk, this machine
    python benchmarks/bench_command.py --copies 40 --device cuda     # a folder of 40 ten-minute talks
    python benchmarks/bench_command.py --compare "--set upsampling.bf16=false"   # A vs B, alternating
    git worktree add /tmp/old b87fcae && python benchmarks/bench_command.py --tree /tmp/old   # this code vs an older checkout
    python benchmarks/bench_command.py --tree /tmp/old --args "--set upsampling.batch_size=2"   # both trees, same arguments

The talk is ``--seconds`` cut (and tiled if short) from ``--source`` (default: the first test talk of
``../shared/data``, else a generated speech-like signal), resampled to 4 kHz with soxr HQ and written
as 16-bit WAV: what a telephone-band recording looks like. Each configuration runs ``--repeats`` times,
alternating with the others so that a busy machine slows them alike; printed: min / median / max of
the wall time and the real-time factor (seconds of audio / wall seconds) at the median. The first
extra run of each configuration warms the file cache and is not counted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

REPO = Path(__file__).resolve().parents[1]
LOW_RATE = 4000


def talk_audio(source: Path | None, seconds: float, low_rate: int = LOW_RATE) -> np.ndarray:
    """``seconds`` of speech at ``low_rate`` (soxr HQ), float32."""
    if source is None:
        default = REPO.parent / "shared" / "data" / "speech" / "talks" / "vcc2016_SM2.flac"
        source = default if default.is_file() else None
    if source is not None:
        x, rate = sf.read(str(source), dtype="float32", always_2d=True)
        x = x[:, 0]
    else:
        sys.path.insert(0, str(REPO))
        from audio_superres.preprocessing.synth import synth_speech

        rate = 16000
        x = synth_speech(min(seconds, 60.0), rate).astype(np.float32)
    x = np.tile(x, int(np.ceil(seconds * rate / len(x))))[: int(seconds * rate)]
    return soxr.resample(x, rate, low_rate, "HQ").astype(np.float32)


def write_talks(folder: Path, audio: np.ndarray, rate: int, copies: int, rates: list[int] | None = None) -> Path:
    """``copies`` 16-bit WAV files of ``audio`` (at ``rate``) in ``folder``: a folder of talks; with
    ``rates``, talk ``k`` is resampled to ``rates[k % len(rates)]`` (a folder of mixed-rate talks)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        to = rates[k % len(rates)] if rates else rate
        x = audio if to == rate else soxr.resample(audio, rate, to, "HQ")
        sf.write(str(folder / f"talk_{k:03d}.wav"), x, to, subtype="PCM_16")
    return folder


def cli_of(tree: Path) -> str:
    """The module that runs ``pipeline`` in checkout ``tree``: ``pipeline.cli`` before the namespace
    package (commit b87fcae and older), else ``audio_superres.pipeline.cli``."""
    return "pipeline.cli" if (tree / "pipeline" / "settings.py").is_file() else "audio_superres.pipeline.cli"


def tree_environment(tree: Path, scratch: Path) -> dict[str, str]:
    """The environment that makes ``python -m`` import ``tree``'s own modules. An old checkout's
    top-level ``pipeline`` is found from its folder (the working directory); for a namespaced one the
    editable install would map ``audio_superres`` to this checkout whatever the folder, so a shim folder
    of links (``audio_superres/models -> tree/models`` ...) goes first on ``PYTHONPATH``."""
    env = dict(os.environ)
    if tree == REPO or cli_of(tree) == "pipeline.cli":
        return env
    shim = scratch / "audio_superres"
    shim.mkdir(parents=True, exist_ok=True)
    for name in ("settings", "preprocessing", "models", "pipeline"):
        if not (shim / name).exists():
            (shim / name).symlink_to(tree / name, target_is_directory=True)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), *filter(None, [env.get("PYTHONPATH")])])
    return env


def run(folder: Path, out: Path, device: str, extra: list[str], tree: Path = REPO, env: dict[str, str] | None = None) -> float:
    """Wall seconds of ``pipeline upsample FOLDER -o OUT`` in a new process, run from checkout ``tree``
    (with ``env`` from :func:`tree_environment`, so that an older checkout runs its own modules)."""
    cmd = [sys.executable, "-m", cli_of(tree), "upsample", str(folder), "-o", str(out), "--device", device, "--quiet", *extra]
    if cli_of(tree) != "pipeline.cli":  # the old command had no --overwrite (it always overwrote)
        cmd.append("--overwrite")
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=tree, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="length of each talk")
    ap.add_argument("--copies", type=int, default=1, help="talks in the folder")
    ap.add_argument("--source", type=Path, help="recording to cut the talk from")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rates", default="", help="comma-separated input rates to cycle through (a folder of mixed-rate talks), e.g. 8000,4000,2000")
    ap.add_argument("--args", default="", help='extra arguments of pipeline upsample, e.g. "--checkpoint x.pt"')
    ap.add_argument("--compare", action="append", default=[], metavar="ARGS", help="another configuration (repeatable)")
    ap.add_argument("--tree", type=Path, action="append", default=[], help="another checkout (a git worktree of an older commit) to time with the same arguments, alternating (repeatable)")
    args = ap.parse_args()

    rates = [int(r) for r in args.rates.split(",") if r]
    audio = talk_audio(args.source, args.seconds, 16000 if rates else LOW_RATE)
    total = args.seconds * args.copies
    configs = [args.args, *[f"{args.args} {c}".strip() for c in args.compare]]
    trees = {c: REPO for c in configs}
    for tree in args.tree:
        configs.append(f"{args.args} [{tree}]".strip())
        trees[configs[-1]] = tree.resolve()
    with tempfile.TemporaryDirectory(prefix="bench_command_") as tmp:
        folder = write_talks(Path(tmp) / "talks", audio, 16000 if rates else LOW_RATE, args.copies, rates)
        times: dict[str, list[float]] = {c: [] for c in configs}

        envs = {c: tree_environment(trees[c], Path(tmp) / f"shim{k}") for k, c in enumerate(configs)}

        def once(c: str) -> float:
            return run(folder, Path(tmp) / "out", args.device, shlex.split(args.args if trees[c] != REPO else c), trees[c], envs[c])

        for c in configs:
            once(c)  # warm-up: file cache, kernels
        for _ in range(args.repeats):
            for c in configs:
                times[c].append(once(c))
    import torch

    where = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} threads"
    at = f"{'/'.join(map(str, rates))} Hz in turn" if rates else f"{LOW_RATE} Hz"
    print(f"pipeline upsample, whole command: {args.copies} x {args.seconds:g} s at {at} ({total:g} s of audio), {where}")
    print("| configuration | min s | median s | max s | x real time (median) |")
    print("|---|---:|---:|---:|---:|")
    base = statistics.median(times[configs[0]])
    for c in configs:
        med = statistics.median(times[c])
        ratio = "" if c == configs[0] else f" ({base / med:.2f}x the first)"
        print(f"| {c or 'defaults'} | {min(times[c]):.2f} | {med:.2f} | {max(times[c]):.2f} | {total / med:.1f}x{ratio} |")


if __name__ == "__main__":
    main()
