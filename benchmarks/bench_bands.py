"""Where a model's SNR goes: per frequency band, its error energy beside sinc's, and how well its
invented band correlates with the truth's; per file, its SNR against sinc's.

    python benchmarks/prepare_speech.py                  # once: data/speech (clips + splits)
    python benchmarks/bench_bands.py --model models/pretrained/bwe_speech_4k_16k.pt --split val

The files are the whole source recordings of ``--split`` (talks trimmed 30 s at each end, as
``bench_quality.py`` scores the test split), or those of ``--test-dir``; the input is soxr HQ,
16-bit, and every output is rounded to 16 bits (``models.evaluate.evaluate_files``). For each file
and band of the whole-file spectrum (``np.fft.rfft``), as shares of the file's energy (%):
``truth`` (the reference's energy there: sinc's error above the low-res Nyquist frequency),
``model`` (the output's energy), ``cross`` (Re <model, truth>) and the error energies of the model
and of sinc. Printed: their means per corpus and band, the correlation ``cross / sqrt(truth *
model)``, and ``best_gain = cross / model`` (the scale of the model's band that would minimise its
error there: below 1, the band costs more SNR than it earns); then the per-file SNR of the model
minus sinc's (quartiles), and the files that lose most. A band adds error unless
``model <= 2 * cross``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from bench_quality import test_files  # this folder: the same files as the quality benchmark

from audio_superres.pipeline.evaluation.evaluate import evaluate_files
from audio_superres.pipeline.evaluation.metrics import band_energy
from audio_superres.pipeline.inference import load_upsampler
from audio_superres.settings import UpsamplingSettings

REPO = Path(__file__).resolve().parents[1]
EDGES_HZ = (0, 1500, 1800, 2000, 2250, 3000, 4000, 6000, 8000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="checkpoint to analyse")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--clips", type=Path, default=REPO / "data" / "speech")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--test-dir", type=Path, help="analyse these files as they are (first folder level = corpus) instead of a split")
    ap.add_argument("--max-files", type=int, default=None, help="at most this many files per corpus")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worst", type=int, default=8, help="list this many files that lose most SNR against sinc")
    ap.add_argument("--out", type=Path, help="write bands.csv and files.csv here")
    args = ap.parse_args()

    files = test_files(args, args.split)
    n_files = sum(len(paths) for paths, _ in files.values())
    if not n_files:
        sys.exit("error: no files to analyse")
    up, _ = load_upsampler(args.model, UpsamplingSettings(device=args.device, batch_size=16), args.device)

    bands, scores = [], []

    def on_file(index: int, name: str, signals: dict[str, np.ndarray]) -> None:
        truth = signals["highres"]
        ours = band_energy(truth, signals["model"][: len(truth)], up.high_rate, EDGES_HZ)
        sinc = band_energy(truth, signals["sinc"][: len(truth)], up.high_rate, EDGES_HZ)
        for row, base in zip(ours, sinc):
            bands.append(
                {
                    "file": name,
                    "corpus": name.split("/")[0],
                    "band": row["band"],
                    "truth": row["truth"],
                    "model": row["estimate"],
                    "cross": row["cross"],
                    "model_error": row["error"],
                    "sinc_error": base["error"],
                }
            )

    for corpus, (paths, trim) in files.items():
        names = [f"{corpus}/{p.name}" for p in paths]
        scores.append(evaluate_files(up, up.factor, up.low_rate, "soxr", paths, names=names, trim_seconds=trim, on_file=on_file, quiet=True))
    bands_df, scores_df = pd.DataFrame(bands), pd.concat(scores, ignore_index=True)

    means = bands_df.groupby(["corpus", "band"], sort=False)[["truth", "model", "cross", "model_error", "sinc_error"]].mean()
    means["correlation"] = means["cross"] / np.sqrt(means["truth"] * means["model"]).replace(0, np.nan)
    means["best_gain"] = means["cross"] / means["model"].replace(0, np.nan)
    print(f"{args.model}: {n_files} files; energy shares in % of each file's energy, means over files")
    print(means.round(3).to_string())

    snr = scores_df.pivot_table(index="file", columns="system", values="snr")
    snr["model_minus_sinc"] = snr["model"] - snr["sinc"]
    snr["corpus"] = snr.index.str.split("/").str[0]
    print("\nper-file SNR of the model minus sinc's (dB)")
    print(snr.groupby("corpus")["model_minus_sinc"].describe().round(3).to_string())
    print(f"\nthe {args.worst} files that lose most")
    print(snr.sort_values("model_minus_sinc")[["sinc", "model", "model_minus_sinc"]].head(args.worst).round(2).to_string())
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        bands_df.to_csv(args.out / "bands.csv", index=False)
        snr.to_csv(args.out / "files.csv")


if __name__ == "__main__":
    main()
