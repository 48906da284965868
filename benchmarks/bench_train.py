"""Is training limited by the data loader or by the model? Clips per second of each, apart and together.

    python benchmarks/bench_train.py --set data.output_dir=data/demo/clips --set model.name=audiounet \\
        [--settings settings] [--steps 30] [--workers 0 2 4] [--loader-only]

Uses the settings as ``pipeline train`` does (``training.batch_size``, ``cache_gb``,
``lowres_methods``, ``gain_db``, ``device``, the model) on ``data.output_dir/splits/train.csv`` and
prints, for one process:

* loader: clips/s of the DataLoader alone (decode or cache, on-the-fly low-res, collate, pinned
  copy), for each ``--workers`` count, after one warm-up batch (the workers' start is not counted);
* step: clips/s of the training step alone (forward, loss, backward, clipping, AdamW) on one batch
  held on the device, after 3 warm-up steps; with peak GPU memory on CUDA;
* both: clips/s of loader and step together, as in training, with the last ``--workers`` count.

If "loader" is below "step", more workers (or the in-memory cache) will speed training up; if it is
far above, the model is the limit. One timing per figure: rough, and sensitive to whatever else the
machine is doing, so the header names the device, the threads and the load average.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from torch.utils.data import DistributedSampler

from audio_superres.models.registry import build_model
from audio_superres.pipeline.training.data import ClipDataset, EpochBatches, cache_fits, load_split, make_loader, split_info
from audio_superres.pipeline.training.train import forward_backward, param_groups
from audio_superres.settings import load_settings


def loader_rate(loader, batches: EpochBatches, n_batches: int) -> float:
    """Clips per second over ``n_batches`` batches (cycling epochs), after one warm-up batch."""
    epoch, clips, started = 0, 0, None
    while True:
        batches.set_epoch(epoch)
        for lr, hr in loader:
            if loader.pin_memory:
                lr, hr = lr.cuda(non_blocking=True), hr.cuda(non_blocking=True)
            if started is None:
                started = time.perf_counter()  # after the first batch: worker start-up excluded
                continue
            clips += len(lr)
            n_batches -= 1
            if n_batches == 0:
                if torch.cuda.is_available() and loader.pin_memory:
                    torch.cuda.synchronize()
                return clips / (time.perf_counter() - started)
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="settings")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=30, help="batches timed for each figure")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to time")
    parser.add_argument("--loader-only", action="store_true", help="time the loader alone (no model)")
    args = parser.parse_args()

    settings = load_settings(args.settings, args.overrides)
    t, clips_dir = settings.training, settings.data.output_dir
    use_cuda = t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")
    rows = load_split(clips_dir, "train")
    info = split_info(rows, clips_dir / "splits" / "train.csv")
    on_the_fly = bool(t.lowres_methods)  # as models/train.py: any methods are made from the high-res clip
    cache = cache_fits(rows, not on_the_fly, t.cache_gb)
    dataset = ClipDataset(clips_dir, rows, info["factor"], info["sample_rate"], list(t.lowres_methods) if on_the_fly else None, t.gain_db, cache=cache)
    clip_s = float(rows["seconds"].iloc[0])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    where = torch.cuda.get_device_name(device) if use_cuda else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"# {where}; load average {load:.1f}; {len(rows)} train clips of {clip_s:g} s, batch {t.batch_size}; "
        f"{'on-the-fly low-res ' + ','.join(t.lowres_methods) if on_the_fly else 'stored low-res'}{', cached in memory' if cache else ', read from disk'}"
    )

    for workers in args.workers:
        batches = EpochBatches(DistributedSampler(dataset, num_replicas=1, rank=0, seed=t.seed), t.batch_size)
        loader = make_loader(dataset, workers, use_cuda, t.seed, batch_sampler=batches)
        rate = loader_rate(loader, batches, args.steps)
        print(f"loader  {workers:>2} workers: {rate:9.1f} clips/s  ({rate * clip_s:8.0f} s of audio per s)")

    if args.loader_only:
        return
    model = build_model(settings.model, info["factor"]).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.learning_rate, fused=use_cuda)
    weights = {"mse_weight": t.mse_weight, "stft_weight": t.stft_weight}
    lr, hr = (x.to(device) for x in next(iter(make_loader(dataset, 0, False, 0, batch_size=t.batch_size))))
    n_params = sum(p.numel() for p in model.parameters())
    if use_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(3 + args.steps):
        if i == 3:
            if use_cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
        forward_backward(model, model, optimizer, lr, hr, weights, t.grad_clip)
        optimizer.step()
    if use_cuda:
        torch.cuda.synchronize()
    rate = args.steps * len(lr) / (time.perf_counter() - started)
    memory = f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if use_cuda else ""
    print(f"step    {settings.model.name} ({n_params / 1e6:.2f} M parameters, {'bf16 autocast' if use_cuda else 'fp32'}): {rate:9.1f} clips/s{memory}")

    workers = args.workers[-1]
    batches = EpochBatches(DistributedSampler(dataset, num_replicas=1, rank=0, seed=t.seed), t.batch_size)
    loader = make_loader(dataset, workers, use_cuda, t.seed, batch_sampler=batches)
    done, clips, epoch, started = -1, 0, 0, None
    while done < args.steps:
        batches.set_epoch(epoch)
        for lr, hr in loader:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            forward_backward(model, model, optimizer, lr, hr, weights, t.grad_clip)
            optimizer.step()
            done += 1
            if done == 0:
                started = time.perf_counter()
                continue
            clips += len(lr)
            if done == args.steps:
                break
        epoch += 1
    if use_cuda:
        torch.cuda.synchronize()
    print(f"both    {workers:>2} workers: {clips / (time.perf_counter() - started):9.1f} clips/s (training as `pipeline train` runs it)")


if __name__ == "__main__":
    main()
