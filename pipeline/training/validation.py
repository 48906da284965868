"""Validation: the loss terms and the scores of the model's 16-bit outputs over the validation clips."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import nn

from audio_superres.models.losses import training_loss
from audio_superres.pipeline.evaluation import metrics
from audio_superres.preprocessing.audio import to_pcm16


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, loss_weights: dict, sample_rate: int, low_rate: int) -> dict[str, float]:
    """Mean loss terms over the validation clips, and SNR / LSD / LSD-HF of each whole clip as the
    16-bit file the model would write (how ``shared/docs/metrics.md`` scores every system)."""
    model.eval()
    sums: dict[str, float] = {}
    pending = []
    n = 0
    # the scores are numpy FFTs, which release the GIL: threads score one batch while the device
    # runs the next
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for lr, hr in loader:
            lr, hr = lr.to(device, non_blocking=True), hr.to(device, non_blocking=True)
            with autocast(device, model):
                pred = model(lr)
            loss, terms = training_loss(pred, hr, model=model, **loss_weights)
            for name, value in {"loss": loss, **terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value) * len(lr)
            n += len(lr)
            for y, y_hat in zip(hr[:, 0].cpu().numpy(), pred[:, 0].float().cpu().numpy()):
                pending.append(pool.submit(metrics.score, y, to_pcm16(y_hat), sample_rate, low_rate))
        scores = [f.result() for f in pending]
    model.train()
    # loss terms as val_loss_<term>, scores as val_snr / val_lsd / val_lsd_hf: a model's own loss
    # term may be called "lsd" too
    out = {("val_loss" if k == "loss" else f"val_loss_{k}"): v / n for k, v in sums.items()}
    out.update({f"val_{k}": float(np.mean([s[k] for s in scores])) for k in ("snr", "lsd", "lsd_hf")})
    return out


def autocast(device: torch.device, model: nn.Module):
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16) unless the family says
    ``train_bf16 = False`` (the research U-Nets: cuDNN's bf16 1-D convolutions of their shapes are
    several times slower than TF32 on an H200); full precision on CPU."""
    enabled = device.type == "cuda" and getattr(model, "train_bf16", True)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
