"""CPU speed of the ``bwe`` model family: parameters, GFLOPs per second of audio, and the real-time
factor of the forward pass over 10 minutes of audio cut into 10 s chunks, batched 8 (as the upsample
command does by default), in float32 and under bfloat16 autocast.

    python benchmarks/bench_bwe_cpu.py                       # default model.* settings, 2 threads
    python benchmarks/bench_bwe_cpu.py --set model.bwe.hidden=192 --set model.bwe.blocks=8 --threads 2

Only the model's forward is timed (interpolation, STFTs, network, iSTFT); reading, chunking and
writing files are the upsample command's and come on top.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from audio_superres.models.registry import build_model
from audio_superres.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=[], metavar="FILE.KEY=VALUE", help="settings override, as the pipeline's --set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    settings = load_settings(None, ["model.name=bwe", *args.set])
    factor, low_rate = settings.data.factor, settings.data.low_rate
    model = build_model(settings.model, factor).eval()
    n_params = sum(p.numel() for p in model.parameters())

    chunk = round(args.chunk_seconds * low_rate)
    n_chunks = max(1, round(args.minutes * 60 / args.chunk_seconds))
    generator = torch.Generator().manual_seed(0)
    batch = 0.1 * torch.randn(args.batch, 1, chunk, generator=generator)

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(batch[:1])
    gflops_per_s = counter.get_total_flops() / 1e9 / args.chunk_seconds

    print(f"model.* {settings.model.model_dump()}")
    print(f"parameters {n_params / 1e6:.3f} M ({n_params * 4 / 2**20:.1f} MiB float32, {n_params * 2 / 2**20:.1f} MiB bf16)")
    print(f"{gflops_per_s:.3f} GFLOPs per second of audio (matmuls and convolutions)")
    print(f"{args.threads} threads, {args.minutes:g} min of audio as {n_chunks} chunks of {args.chunk_seconds:g} s, batch {args.batch}")
    for label, dtype in (("float32", None), ("bf16 autocast", torch.bfloat16)):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            model(batch)  # warm-up
            start = time.perf_counter()
            done = 0
            while done < n_chunks:
                rows = min(args.batch, n_chunks - done)
                model(batch[:rows])
                done += rows
            elapsed = time.perf_counter() - start
        print(f"{label:>14}: {elapsed:6.2f} s for {args.minutes:g} min -> {args.minutes * 60 / elapsed:6.1f}x real time")


if __name__ == "__main__":
    main()
