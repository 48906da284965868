"""Size and CPU speed of the research families (``audiounet``, ``tfnet``) at two sizes.

    python benchmarks/bench_models.py [--seconds 10] [--factor 4] [--low-rate 4000] [--threads 0]

For each family, at the default settings (``ModelSettings()``: width 32, depth 4) and at the paper's
size (width 128, depth 4: Kuleshov's 128-256-512-512 filters), prints the parameter count, GFLOPs per
second of audio (``models.flops.flops_per_second``: convolutions and matrix products, not FFTs or
element-wise work) and the CPU speed of one eval-mode forward pass on ``--seconds`` of low-res noise
after one warm-up pass on 1 s, as a multiple of real time (audio seconds / wall seconds; above 1 is
faster than real time). A single run per model: a rough figure, sensitive to whatever else the
machine is doing, so the header names the machine, the thread count and the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from audio_superres.models.flops import count_parameters, flops_per_second
from audio_superres.models.registry import build_model
from audio_superres.settings import ModelSettings

SIZES = {"default": {}, "paper": {"width": 128, "depth": 4}}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length of the timed forward pass")
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--low-rate", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    ap.add_argument("--families", nargs="+", default=["audiounet", "tfnet"])
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, load {load:.1f}")
    print(f"# {args.low_rate} Hz -> {args.low_rate * args.factor} Hz, timed on {args.seconds:g} s of audio")
    print(f"{'family':<10} {'size':<8} {'width':>5} {'depth':>5} {'params':>12} {'GFLOP/s audio':>14} {'x real time':>12}")
    torch.manual_seed(0)
    x = torch.randn(1, 1, round(args.seconds * args.low_rate)) * 0.1
    for name in args.families:
        for size, changes in SIZES.items():
            settings = ModelSettings(name=name, **changes)
            model = build_model(settings, args.factor).eval()
            params = count_parameters(model)
            gflops = flops_per_second(model, args.factor, args.low_rate) / 1e9  # also the warm-up pass
            with torch.no_grad():
                t = time.perf_counter()
                model(x)
                wall = time.perf_counter() - t
            print(f"{name:<10} {size:<8} {settings.width:>5} {settings.depth:>5} {params:>12,} {gflops:>14.2f} {args.seconds / wall:>12.2f}")
            del model


if __name__ == "__main__":
    main()
