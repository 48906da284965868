"""``pipeline upsample`` speed for each model family at its default size, and the pipeline's own cost.

    python benchmarks/bench_upsample.py [--seconds 120] [--device auto] [--families audiounet,tfnet,bwe]
                                        [--batch-size 8] [--chunk-seconds 10] [--bf16] [--repeats 2]
    python benchmarks/bench_upsample.py --memory-hours 2 [--family audiounet|interpolation] [--device cpu]

Speed: a generated speech-like file of ``--seconds`` at the low rate (4 kHz) is upsampled by
:func:`models.inference.upsample_file` (read, chunk, batch, model, cross-fade, write 16-bit WAV) once
with each family's untrained network (speed does not depend on the weights), and once with the
network replaced by plain interpolation (``models.interpolation.Interpolator``, the same cubic or sinc
the family starts from): everything the pipeline does around a network. Printed per family: speed as
a multiple of real time (audio seconds / wall seconds; the best of ``--repeats``), the speed of the
interpolation-only run, and the overhead ratio = interpolation-only time / model time (the share of
a model run that is not the network). On CUDA, also the peak GPU memory.

Memory: a file of ``--memory-hours`` at 8 kHz (so the streaming resampler is exercised too) is written
to a temporary folder and upsampled in a child process with ``upsampling`` defaults; the child's peak
resident memory (ru_maxrss) is printed beside the file's length. Memory must not grow with the length:
compare a short and a long run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audio_superres.models.device import resolve_device  # noqa: E402
from audio_superres.models.interpolation import Interpolator  # noqa: E402
from audio_superres.models.registry import MODEL_FAMILIES, build_model  # noqa: E402
from audio_superres.pipeline.inference import ChunkPlan, Upsampler, upsample_file  # noqa: E402
from audio_superres.preprocessing.lowres import make_lowres  # noqa: E402
from audio_superres.preprocessing.synth import synth_speech  # noqa: E402
from audio_superres.settings import ModelSettings, UpsamplingSettings  # noqa: E402

FACTOR, HIGH = 4, 16000
LOW = HIGH // FACTOR


def write_input(path: Path, seconds: float, rate: int, seed: int = 0) -> Path:
    """``seconds`` of speech-like audio at ``rate``, written a minute at a time (any length, little memory)."""
    minute = synth_speech(60.0, HIGH, seed=seed)
    block = make_lowres(minute, HIGH // rate, "soxr", HIGH) if HIGH % rate == 0 else minute
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        left = round(seconds * rate)
        while left > 0:
            f.write(np.clip(np.round(block[:left] * 32768), -32768, 32767).astype(np.int16))
            left -= min(left, len(block))
    return path


def timed_run(up: Upsampler, settings: UpsamplingSettings, src: Path, dst: Path, repeats: int) -> float:
    """Best wall time of ``repeats`` runs of the whole file path (read ... write)."""
    plan = ChunkPlan.from_settings(settings, up.low_rate)
    best = float("inf")
    for _ in range(repeats):
        if up.device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        result = upsample_file(src, dst, up, plan)
        if result.error:
            raise RuntimeError(result.error)
        best = min(best, time.perf_counter() - t)
    return best


def bench_speed(args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    settings = UpsamplingSettings(batch_size=args.batch_size, chunk_seconds=args.chunk_seconds, bf16=args.bf16)
    families = args.families.split(",") if args.families else sorted(MODEL_FAMILIES)
    with tempfile.TemporaryDirectory(prefix="bench_upsample_") as tmp:
        src = write_input(Path(tmp) / "in.wav", args.seconds, LOW)
        warm = write_input(Path(tmp) / "warm.wav", min(args.seconds, settings.chunk_seconds * 2), LOW)
        dst = Path(tmp) / "out.wav"
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(
            f"upsample {args.seconds:g} s of audio {LOW} Hz -> {HIGH} Hz on {device} ({name}); batch {settings.batch_size} x "
            f"{settings.chunk_seconds:g} s chunks, bf16 {settings.bf16}; best of {args.repeats}"
        )
        print("| family | parameters | model: x real time | interpolation only: x real time | overhead ratio | peak GPU memory |")
        print("|---|---:|---:|---:|---:|---:|")
        for family in families:
            model_settings = ModelSettings(name=family)
            model = build_model(model_settings, FACTOR)
            params = sum(p.numel() for p in model.parameters())
            up = Upsampler(model, FACTOR, LOW, device, settings.batch_size, settings.bf16)
            timed_run(up, settings, warm, dst, 1)  # warm-up: kernels, allocator, page cache
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t_model = timed_run(up, settings, src, dst, args.repeats)
            gpu_mem = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else "-"
            interp = Upsampler(Interpolator(FACTOR, model_settings.interpolation), FACTOR, LOW, device, settings.batch_size, settings.bf16)
            timed_run(interp, settings, warm, dst, 1)
            t_interp = timed_run(interp, settings, src, dst, args.repeats)
            print(f"| {family} | {params / 1e6:.2f} M | {args.seconds / t_model:.1f} | {args.seconds / t_interp:.1f} | {t_interp / t_model:.3f} | {gpu_mem} |")
            del up, model
            if device.type == "cuda":
                torch.cuda.empty_cache()


def run_one(args: argparse.Namespace) -> None:
    """Child process of the memory benchmark: one file, then its own peak RSS as JSON."""
    device = resolve_device(args.device)
    settings = UpsamplingSettings(batch_size=args.batch_size, chunk_seconds=args.chunk_seconds, bf16=args.bf16)
    model = Interpolator(FACTOR, "cubic") if args.family == "interpolation" else build_model(ModelSettings(name=args.family), FACTOR)
    up = Upsampler(model, FACTOR, LOW, device, settings.batch_size, settings.bf16)
    t = time.perf_counter()
    result = upsample_file(Path(args.run_one[0]), Path(args.run_one[1]), up, ChunkPlan.from_settings(settings, LOW))
    print(json.dumps({"error": result.error, "seconds": result.seconds, "wall": time.perf_counter() - t, "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def bench_memory(args: argparse.Namespace) -> None:
    hours = args.memory_hours
    with tempfile.TemporaryDirectory(prefix="bench_upsample_mem_") as tmp:
        src = write_input(Path(tmp) / "long.wav", hours * 3600, 8000)
        print(f"input: {hours:g} h at 8000 Hz ({src.stat().st_size / 2**20:.0f} MiB); model {args.family}; device {args.device}")
        child = [
            sys.executable,
            __file__,
            "--run-one",
            str(src),
            str(Path(tmp) / "out.wav"),
            "--family",
            args.family,
            "--device",
            args.device,
            "--batch-size",
            str(args.batch_size),
            "--chunk-seconds",
            str(args.chunk_seconds),
        ] + (["--bf16"] if args.bf16 else [])
        out = subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        if r["error"]:
            raise RuntimeError(r["error"])
        print(
            f"upsampled {r['seconds'] / 3600:.2f} h in {r['wall'] / 60:.1f} min ({r['seconds'] / r['wall']:.1f}x real time); "
            f"peak RSS {r['max_rss_kb'] / 2**20:.2f} GiB; output {(Path(tmp) / 'out.wav').stat().st_size / 2**20:.0f} MiB"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="length of the speed test input")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--families", default="", help="comma-separated; default every registered family")
    ap.add_argument("--batch-size", type=int, default=UpsamplingSettings().batch_size)
    ap.add_argument("--chunk-seconds", type=float, default=UpsamplingSettings().chunk_seconds)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--memory-hours", type=float, help="run the memory benchmark on a file this long instead")
    ap.add_argument("--family", default="audiounet", help="memory benchmark: a family name, or 'interpolation'")
    ap.add_argument("--run-one", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_one:
        run_one(args)
    elif args.memory_hours:
        bench_memory(args)
    else:
        bench_speed(args)


if __name__ == "__main__":
    main()
