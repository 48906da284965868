"""The band-gain trade-off: the model's invented band scaled by a gain g (0 = sinc, 1 = the model),
scored with SNR, LSD, ViSQOL and PESQ-WB on the same files, to choose the point a listener would prefer.

    python benchmarks/bench_tradeoff.py --test-dir .gpu/eval/test --model models/pretrained/bwe_speech_4k_16k.pt

y_g = sinc + g * (model - sinc): below the input's band the two agree (the model keeps the input's
band), so g scales what the model adds. Each output is rounded to 16 bits, as a file would hold it.

Oracle rows bound what a better model of this kind could reach: ``level oracle``, the model's band
with each STFT frame (32 ms, hop 8 ms) scaled to the truth's band energy in that frame (its spectral
shape and phase kept: what a model that got the band's level right frame by frame would score);
``no overshoot (ERB)`` and ``no overshoot (bin)``, the model's band turned down wherever it is louder
than the truth's, per critical band (16 ERB-wide bands above 1.5 kHz, as the overshoot loss counts
them) or per STFT bin, and left alone where it is quieter (what a model that never overshoots
would score: the loss ``model.bwe.overshoot_weight`` trains towards it); and ``truth``, the
reference itself (the ceiling of every metric).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.signal

from audio_superres.models.bwe_losses import erb_bands
from audio_superres.models.packaged import checkpoint_path
from audio_superres.pipeline.evaluation.evaluate import load_highres, reconstruct
from audio_superres.pipeline.evaluation.metrics import score
from audio_superres.pipeline.evaluation.perceptual import perceptual_scores, visqol_mapping
from audio_superres.pipeline.inference import ChunkPlan, load_upsampler
from audio_superres.preprocessing.audio import to_pcm16
from audio_superres.settings import UpsamplingSettings


def _rescaled_band(sinc: np.ndarray, model: np.ndarray, truth: np.ndarray, rate: int, gain_of) -> np.ndarray:
    """sinc + the model's band (model - sinc), each STFT cell (32 ms frames, hop 8 ms) times
    ``gain_of(freqs, added, wanted)``, where ``added`` is the model's band and ``wanted`` the truth's (truth - sinc)."""
    stft = {"fs": rate, "nperseg": rate // 1000 * 32, "noverlap": rate // 1000 * 24}
    freqs, _, added = scipy.signal.stft(model - sinc, **stft)
    _, _, wanted = scipy.signal.stft(truth - sinc, **stft)
    _, band = scipy.signal.istft(added * gain_of(freqs, added, wanted), **stft)
    return sinc + band[: len(sinc)]


def level_oracle(sinc: np.ndarray, model: np.ndarray, truth: np.ndarray, rate: int) -> np.ndarray:
    """sinc + the model's band, each STFT frame scaled to the energy of the truth's band there."""

    def gain(freqs: np.ndarray, added: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        return np.sqrt((np.abs(wanted) ** 2).sum(axis=0) / ((np.abs(added) ** 2).sum(axis=0) + 1e-20))

    return _rescaled_band(sinc, model, truth, rate, gain)


def overshoot_oracle(sinc: np.ndarray, model: np.ndarray, truth: np.ndarray, rate: int, per_bin: bool) -> np.ndarray:
    """sinc + the model's band, scaled down in each frame and critical band (or bin) where it is louder than the truth's."""

    def gain(freqs: np.ndarray, added: np.ndarray, wanted: np.ndarray) -> np.ndarray:
        if per_bin:
            g = np.abs(wanted) / (np.abs(added) + 1e-20)
        else:  # each bin from 1.5 kHz up in one of 16 ERB-wide bands: the band's gain, spread back to its bins
            first = int(np.searchsorted(freqs, 1500.0))
            bands = erb_bands(first, len(freqs), 2 * (len(freqs) - 1), 16, rate).numpy()
            energy = lambda x: bands @ (np.abs(x[first:]) ** 2)  # (bands, frames)
            g = np.ones(added.shape)
            g[first:] = bands.T @ np.sqrt(energy(wanted) / (energy(added) + 1e-20))
        g = np.minimum(g, 1.0)
        g[freqs < 1500.0] = 1.0  # the input's band: the model keeps it
        return g

    return _rescaled_band(sinc, model, truth, rate, gain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-dir", type=Path, required=True)
    ap.add_argument("--model", required=True, help="a checkpoint file or a shipped model's name")
    ap.add_argument("--gains", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--perceptual-seconds", type=float, default=30.0, help="ViSQOL and PESQ on the middle of each file")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-oracle", action="store_true", help="leave out the level-oracle and truth rows")
    args = ap.parse_args()
    settings = UpsamplingSettings(device=args.device)
    up, _ = load_upsampler(checkpoint_path(args.model), settings, args.device)
    plan = ChunkPlan.from_settings(settings, up.low_rate)
    gains = [float(g) for g in args.gains.split(",")]
    rows = []
    files = sorted(p for p in args.test_dir.rglob("*") if p.suffix in (".flac", ".wav"))
    for path in files:
        hr = load_highres(path, up.high_rate, up.factor)
        signals = reconstruct(hr, up, plan, "soxr")
        points = {f"{g:g}": signals["sinc"] + g * (signals["model"] - signals["sinc"]) for g in gains}
        if not args.no_oracle:
            sinc, model = signals["sinc"], signals["model"]
            points |= {
                "level oracle": level_oracle(sinc, model, hr, up.high_rate),
                "no overshoot (ERB)": overshoot_oracle(sinc, model, hr, up.high_rate, per_bin=False),
                "no overshoot (bin)": overshoot_oracle(sinc, model, hr, up.high_rate, per_bin=True),
                "truth": hr,
            }
        for point, y in points.items():
            y = to_pcm16(y)
            s = score(hr, y, up.high_rate, up.low_rate)
            rows.append({"file": path.name, "corpus": path.relative_to(args.test_dir).parts[0], "point": point, **s, **perceptual_scores(hr, y, up.high_rate, args.perceptual_seconds)})
        print(f"scored {path.name}", file=sys.stderr)
    table = pd.DataFrame(rows).groupby("point", sort=False)[["snr", "lsd", "lsd_hf", "visqol", "pesq_wb"]].mean()
    print(f"{len(files)} files, soxr input at {up.low_rate} Hz, 16-bit outputs; ViSQOL mapping: {visqol_mapping()}")
    print("| band gain | SNR (dB) | LSD | LSD-HF | ViSQOL | PESQ-WB |\n|---:|---:|---:|---:|---:|---:|")
    for point, r in table.iterrows():
        print(f"| {point} | {r.snr:.2f} | {r.lsd:.3f} | {r.lsd_hf:.3f} | {r.visqol:.2f} | {r.pesq_wb:.2f} |")


if __name__ == "__main__":
    main()
