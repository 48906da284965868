"""Quality and speed of every system on speakers never trained on, each row measured in one run.

    python benchmarks/prepare_speech.py                  # once: data/speech (clips + splits)
    python benchmarks/bench_quality.py --model bwe=runs/bwe/best.pt \\
        --model audiounet=runs/audiounet/best.pt --model tfnet=runs/tfnet/best.pt
    python benchmarks/prepare_speech.py --set piano --out data/piano
    python benchmarks/bench_quality.py --clips data/piano --model piano-4k=piano-4k --model speech-4k=speech-4k

Quality: the whole source recordings of the test split of ``data/speech`` (2 talks, 30 s trimmed at
each end as splice does, and the utterances of the test speakers), or the files of ``--test-dir``
as they are. Each model gets low-res input made as a user's would be (soxr HQ, 16-bit), and is
scored with SNR, LSD and LSD-HF (``shared/docs/metrics.md``) beside sinc and cubic on the same files,
every output rounded to 16 bits. Figures are means over files, per corpus.

Speed: ``pipeline upsample`` as a user runs it, whole command included (process start, model load,
read, write), on a ``--rtf-seconds`` talk cut from a test talk and resampled to the model's input rate
(a telephone-band recording), ``--rtf-copies`` files of it in one folder (a folder of talks: what a GPU
user runs); real-time factor = seconds of audio / wall seconds. ``bench_command.py`` times the command
alone, with repeats and A-vs-B comparisons.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd
from bench_command import run as run_command  # this folder: the same command timing
from bench_command import talk_audio, write_talks

from audio_superres.models.packaged import checkpoint_path
from audio_superres.pipeline.evaluation.evaluate import evaluate_files
from audio_superres.pipeline.inference import load_upsampler
from audio_superres.settings import UpsamplingSettings

REPO = Path(__file__).resolve().parents[1]
# corpus prefix of a split's sources -> seconds trimmed from each end (as splice does)
TRIM = {"talks": 30.0, "utterances/speechocean762": 0.0, "utterances/ravdess": 0.0, "music/piano": 1.0}


def test_files(args: argparse.Namespace, split: str = "test") -> dict[str, tuple[list[Path], float]]:
    """Per corpus: the files to score and the seconds to trim from each end (the source recordings
    of ``split``, or the files of ``args.test_dir``)."""
    if args.test_dir is not None:
        groups: dict[str, list[Path]] = {}
        for p in sorted(args.test_dir.rglob("*.flac")) + sorted(args.test_dir.rglob("*.wav")):
            groups.setdefault(p.relative_to(args.test_dir).parts[0], []).append(p)
        return {corpus: (paths[: args.max_files], 0.0) for corpus, paths in sorted(groups.items())}
    split_csv = args.clips / "splits" / f"{split}.csv"
    if not split_csv.is_file():
        sys.exit(f"error: {split_csv}: no split; run benchmarks/prepare_speech.py first")
    rows = pd.read_csv(split_csv, dtype={"source": str})
    out = {}
    for corpus in TRIM:
        sources = [s for s in rows["source"].unique() if s.startswith(corpus + "/")]
        if sources:  # speech sources are relative to data/speech, music ones to data (prepare_speech.py --set)
            root = args.data if corpus.startswith("music/") else args.data / "speech"
            out[corpus] = ([root / s for s in sources][: args.max_files], TRIM[corpus])
    return out


def score_all(models: dict[str, Path], files: dict[str, tuple[list[Path], float]], device: str, bf16: bool, methods: list[str], perceptual: bool = False) -> pd.DataFrame:
    """One row per file, system and low-res method (column ``method``)."""
    frames = []
    baselines_for: set[int] = set()  # input rates whose sinc and cubic rows are already kept
    settings = UpsamplingSettings(device=device, bf16=True if bf16 else "auto", batch_size=16)
    upsamplers = {name: load_upsampler(ckpt, settings, device)[0] for name, ckpt in models.items()}  # each loaded once
    several_rates = len({up.low_rate for up in upsamplers.values()}) > 1
    for name, ckpt in models.items():
        up = upsamplers[name]
        rate_tag = f"@{up.low_rate / 1000:g}k" if several_rates else ""
        for method in methods:
            for corpus, (paths, trim) in files.items():
                scores = evaluate_files(up, up.factor, up.low_rate, method, paths, trim_seconds=trim, quiet=True, perceptual=perceptual and method == methods[0])
                scores["system"] = scores["system"].replace({"model": name, "sinc": "sinc" + rate_tag, "cubic": "cubic" + rate_tag})
                if up.low_rate in baselines_for:  # the baselines of one input rate are the same for every model
                    scores = scores[scores["system"] == name]
                scores.insert(0, "corpus", corpus)
                scores.insert(1, "method", method)
                scores["input_rate"] = up.low_rate
                frames.append(scores)
        baselines_for.add(up.low_rate)
        print(f"scored {name} ({ckpt})", file=sys.stderr)
    return pd.concat(frames, ignore_index=True)


def method_matrix(scores: pd.DataFrame) -> str:
    """Mean LSD and SNR over all files: a row per system, a column per low-res method of the input
    (for models trained on one method each, the train-method x test-method matrix)."""
    lines = []
    for metric, label, fmt in (("lsd", "LSD", "{:.3f}"), ("snr", "SNR (dB)", "{:.2f}")):
        table = scores.pivot_table(index="system", columns="method", values=metric, aggfunc="mean", sort=False)
        methods = list(table.columns)
        lines += [f"\n{label} by test low-res method (all files)", "| system | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        lines += [f"| {system} | " + " | ".join(fmt.format(v) for v in row) + " |" for system, row in table.iterrows()]
    return "\n".join(lines)


def realtime_factors(models: dict[str, Path], source: Path, seconds: float, copies: int, device: str, bf16: bool, low_rate: int) -> dict[str, float]:
    # the talk as a user with a telephone-band recording has it: at the model's input rate
    audio = talk_audio(source, seconds, low_rate)
    factors = {}
    with tempfile.TemporaryDirectory(prefix="bench_rtf_") as tmp:
        folder = write_talks(Path(tmp) / "talks", audio, low_rate, copies)
        for name, ckpt in models.items():
            extra = ["--checkpoint", str(ckpt), "--set", f"upsampling.bf16={'true' if bf16 else 'auto'}"]
            factors[name] = seconds * copies / run_command(folder, Path(tmp) / f"out_{name}", device, extra)
            print(f"timed {name}: {factors[name]:.1f}x real time", file=sys.stderr)
    return factors


def table(scores: pd.DataFrame, speed: dict[str, float], speed_label: str) -> str:
    lines = []
    scores = scores[scores["method"] == scores["method"].iloc[0]]  # the first method: soxr by default
    perceptual = [c for c in ("visqol", "pesq_wb") if c in scores.columns and scores[c].notna().any()]
    heads = {"visqol": "ViSQOL", "pesq_wb": "PESQ-WB"}
    for corpus, group in [*scores.groupby("corpus", sort=False), ("all files", scores)]:
        means = group.groupby("system", sort=False)[["snr", "lsd", "lsd_hf", *perceptual]].mean()
        files = group.groupby("system", sort=False)["file"].nunique()
        rate_of = group.groupby("system", sort=False)["input_rate"].first()
        sinc_lsd = {rate_of[s]: means.loc[s, "lsd"] for s in means.index if s.startswith("sinc")}  # per input rate
        extra_head = "".join(f" {heads[c]} |" for c in perceptual)
        lines += [f"\n{corpus}", f"| system | files | SNR (dB) | LSD | LSD-HF | LSD / sinc |{extra_head} {speed_label} |", "|---|---:|---:|---:|---:|---:|" + "---:|" * len(perceptual) + "---:|"]
        for system, r in means.iterrows():
            rtf = f"{speed[system]:.1f}x" if system in speed else "-"
            extra = "".join(f" {r[c]:.2f} |" for c in perceptual)
            lines.append(f"| {system} | {files[system]} | {r.snr:.2f} | {r.lsd:.3f} | {r.lsd_hf:.3f} | {r.lsd / sinc_lsd[rate_of[system]]:.3f} |{extra} {rtf} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT", help="a system to score (repeatable)")
    ap.add_argument("--clips", type=Path, default=REPO / "data" / "speech")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--test-dir", type=Path, help="score these files as they are instead of the test split")
    ap.add_argument("--max-files", type=int, default=None, help="at most this many files per corpus")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast for every model (default: upsampling.bf16=auto, on for bwe)")
    ap.add_argument("--methods", default="soxr", help="comma-separated low-res methods of the input (the first is the main table; several add a method matrix)")
    ap.add_argument("--rtf-seconds", type=float, default=600.0)
    ap.add_argument("--rtf-copies", type=int, default=1)
    ap.add_argument("--no-rtf", action="store_true")
    ap.add_argument("--perceptual", action="store_true", help="also ViSQOL and PESQ-WB (needs the [metrics] extra; slow: the middle 60 s of each file)")
    ap.add_argument("--out", type=Path, help="write scores.csv and table.md here")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in args.model)
    models = {name: checkpoint_path(path) for name, path in models.items()}  # a file, or a shipped model's name
    if not models:
        ap.error("give at least one --model NAME=CHECKPOINT")

    files = test_files(args)
    methods = args.methods.split(",")
    scores = score_all(models, files, args.device, args.bf16, methods, args.perceptual)
    speed: dict[str, float] = {}
    if not args.no_rtf:
        talk = next(p for corpus, (paths, _) in files.items() if corpus == "talks" for p in paths) if "talks" in files else next(iter(files.values()))[0][0]
        low_rate = load_upsampler(next(iter(models.values())), UpsamplingSettings(device="cpu"), "cpu")[0].low_rate
        speed = realtime_factors(models, talk, args.rtf_seconds, args.rtf_copies, args.device, args.bf16, low_rate)
    import torch

    where = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    label = f"x real time, {where}, {args.rtf_copies} x {args.rtf_seconds:g} s"
    text = table(scores, speed, label)
    if len(methods) > 1:
        text += "\n" + method_matrix(scores)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        scores.to_csv(args.out / "scores.csv", index=False)
        (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
