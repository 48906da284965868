"""``pipeline evaluate``: score a model beside the sinc and cubic baselines on whole recordings.

For each high-res file, exactly as the checkpoint's data settings say (``shared/docs/metrics.md``):

1. read mono at the model's high rate, rounded to 16 bits, cut to a multiple of ``factor`` samples
   (and, for the test split, ``data.trim_seconds`` cut from each end, as ``splice`` does);
2. make the low-res input with the checkpoint's ``lowres`` method, rounded to 16 bits: what the model
   would be given in a file;
3. upsample it through the same chunked code as ``pipeline upsample`` (:func:`upsample_array`), and
   with the two baselines;
4. round every output to 16 bits (a fair comparison: the noise floor of 16-bit output alone moves LSD
   by about 0.5) and score SNR, LSD and LSD-HF (``metrics.score``) on the whole file, and the
   perceptual scores ViSQOL and wide-band PESQ (``perceptual.perceptual_scores``) on its middle
   ``perceptual_seconds`` (default :data:`PERCEPTUAL_SECONDS`: ViSQOL takes seconds per minute).

Which files, names, trim and low-res method: :func:`.plan.plan_evaluation` (``pipeline evaluate``
and the demo call it, then :func:`evaluate`).

Output folder::

    scores.csv              one row per file and system (model, sinc, cubic): snr, lsd, lsd_hf,
                            visqol, pesq_wb (NaN: not scored; see perceptual.py)
    summary.md              the mean of each figure per system (also printed), and how the
                            perceptual scores were made (ViSQOL's quality mapping, the span scored)
    eval.json               checkpoint, rates, low-res method and files: what the report shows
    samples/<name>/         for --figures N files: an excerpt of each signal as 16-bit WAV
                            (highres, lowres, sinc, cubic, model) and spectrogram.png (the same five)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from audio_superres.pipeline.evaluation.baselines import upsample_cubic, upsample_sinc
from audio_superres.pipeline.inference import ChunkPlan, Upsampler, upsample_array
from audio_superres.preprocessing.audio import AudioError, atomic_write_text, read_audio, to_pcm16
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.settings import UpsamplingSettings

from . import perceptual as perceptual_metrics
from .metrics import score
from .samples import SIGNAL_LABELS, SIGNALS, pick_indices, sample_folder_name, save_sample

SYSTEMS = ("model", "sinc", "cubic")
PERCEPTUAL = ("visqol", "pesq_wb")
PERCEPTUAL_LABELS = {"visqol": "ViSQOL", "pesq_wb": "PESQ-WB"}
FIGURES = ("snr", "lsd", "lsd_hf", *PERCEPTUAL)
SCORE_COLUMNS = ["file", "seconds", "system", *FIGURES]
PERCEPTUAL_SECONDS = perceptual_metrics.EVALUATE_SECONDS  # the middle of a file the perceptual scores see


class EvaluateError(Exception):
    """The stage cannot run (no test split, no files); the message is one line."""


def reconstruct(hr: np.ndarray, up: Upsampler, plan: ChunkPlan, lowres: str) -> dict[str, np.ndarray]:
    """Every signal of one evaluation, each rounded to 16 bits: ``highres`` (as given), ``lowres``
    (made by ``lowres``), and the ``model``, ``sinc`` and ``cubic`` reconstructions of it."""
    f, low = up.factor, up.low_rate
    lr = to_pcm16(make_lowres(hr, f, lowres, up.high_rate))
    return {"highres": hr, "lowres": lr, "model": to_pcm16(upsample_array(lr, up, plan)), "sinc": to_pcm16(upsample_sinc(lr, f, low)), "cubic": to_pcm16(upsample_cubic(lr, f))}


def perceptual_plan(wanted: bool, rate: int) -> tuple[bool, str | None]:
    """Whether to compute the perceptual scores at ``rate``, and a one-line note when they were
    wanted and cannot all be had (a package is missing, or the rate is not 16 kHz)."""
    if not wanted:
        return False, None
    if rate != perceptual_metrics.RATE:
        return False, f"perceptual scores are defined at {perceptual_metrics.RATE} Hz; this model outputs {rate} Hz: not scored"
    found = perceptual_metrics.available()
    if not all(found.values()):
        return any(found.values()), perceptual_metrics.MISSING_HINT
    return True, None


def perceptual_footnote(seconds: float | None) -> str:
    """How the perceptual figures were made, one line (printed under every table that shows them)."""
    span = f"the middle {seconds:g} s of each file (whole files when shorter)" if seconds else "whole files"
    return (
        f"ViSQOL: v3 speech mode, quality mapping {perceptual_metrics.visqol_mapping()} (compare only within one mapping). "
        f"PESQ-WB: ITU-T P.862.2, the mean over consecutive segments of at most {perceptual_metrics.PESQ_MAX_SECONDS:g} s. "
        f"Both MOS-LQO (higher is better), on {span}; (k of n): only k files could be scored."
    )


def load_highres(path: Path, sample_rate: int, factor: int, trim_seconds: float = 0.0) -> np.ndarray:
    """``path`` mono at ``sample_rate``, 16-bit, ``trim_seconds`` cut from each end, cut to a multiple
    of ``factor``. Raises :class:`AudioError` when nothing is left."""
    hr, _ = read_audio(path, sample_rate)
    hr = to_pcm16(hr)
    trim = round(trim_seconds * sample_rate)
    if trim:
        if len(hr) <= 2 * trim:
            raise AudioError(path, f"too short: {len(hr) / sample_rate:.1f} s leaves nothing after trimming {trim_seconds:g} s from each end")
        hr = hr[trim:-trim]
    hr = hr[: len(hr) // factor * factor]
    if len(hr) == 0:
        raise AudioError(path, f"too short: fewer than {factor} samples at {sample_rate} Hz")
    return hr


def evaluate_files(
    model: nn.Module | Upsampler,
    factor: int,
    low_rate: int,
    lowres: str,
    paths: Sequence[str | Path],
    *,
    names: Sequence[str] | None = None,
    settings: UpsamplingSettings | None = None,
    trim_seconds: float = 0.0,
    on_file: Callable[[int, str, dict[str, np.ndarray]], None] | None = None,
    perceptual: bool = True,
    perceptual_seconds: float | None = PERCEPTUAL_SECONDS,
    quiet: bool = False,
) -> pd.DataFrame:
    """Scores of ``model`` and the baselines on each high-res file of ``paths``: a frame with columns
    :data:`SCORE_COLUMNS`, one row per file and system. ``names`` label the files (default: the
    paths). Unreadable files are reported on stderr and listed in ``frame.attrs["errors"]``; the
    others go on. ``on_file(index, name, signals)`` sees every file's signals (for figures).

    ``visqol`` and ``pesq_wb`` are NaN when ``perceptual`` is False, their packages are absent
    or the rate is not 16 kHz (:func:`perceptual_plan`); otherwise they are scored on the middle
    ``perceptual_seconds`` of each file (None or 0: the whole file)."""
    settings = settings or UpsamplingSettings()
    up = model if isinstance(model, Upsampler) else Upsampler(model, factor, low_rate, batch_size=settings.batch_size, bf16=settings.bf16)
    if (up.factor, up.low_rate) != (factor, low_rate):
        raise ValueError(f"the upsampler works at factor {up.factor}, {up.low_rate} Hz; asked for factor {factor}, {low_rate} Hz")
    plan = ChunkPlan.from_settings(settings, low_rate)
    names = list(names) if names is not None else [str(p) for p in paths]
    with_perceptual, _ = perceptual_plan(perceptual, up.high_rate)
    not_scored = dict.fromkeys(PERCEPTUAL, np.nan)
    rows: list[dict] = []
    errors: list[str] = []
    for index, (path, name) in enumerate(tqdm(list(zip(paths, names)), desc="evaluate", unit="file", disable=quiet, dynamic_ncols=True)):
        try:
            hr = load_highres(Path(path), up.high_rate, factor, trim_seconds)
        except AudioError as e:
            errors.append(str(e))
            tqdm.write(f"error: {e}", file=sys.stderr)
            continue
        signals = reconstruct(hr, up, plan, lowres)
        for system in SYSTEMS:
            figures = score(hr, signals[system], up.high_rate, low_rate)
            if with_perceptual:
                figures |= perceptual_metrics.perceptual_scores(hr, signals[system], up.high_rate, max_seconds=perceptual_seconds)
            rows.append({"file": name, "seconds": len(hr) / up.high_rate, "system": system, **not_scored, **figures})
        if on_file is not None:
            on_file(index, name, signals)
    frame = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    frame.attrs["errors"] = errors
    return frame


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean of each figure per system (in :data:`SYSTEMS` order), with the file count and each
    system's LSD as a fraction of sinc's (how ``shared/docs/metrics.md`` says to compare). The
    perceptual means are over the files scored (NaN left out), counted in ``visqol_files`` and
    ``pesq_wb_files``."""
    groups = scores.groupby("system", sort=False)
    means = groups[[f for f in FIGURES if f in scores]].mean()
    means.insert(0, "files", groups["file"].nunique())
    for figure in PERCEPTUAL:
        if figure in scores:
            means[f"{figure}_files"] = groups[figure].count()
    means = means.reindex([s for s in SYSTEMS if s in means.index])
    means["lsd_vs_sinc"] = means["lsd"] / means.loc["sinc", "lsd"] if "sinc" in means.index else np.nan
    return means


def shown_perceptual(summary: pd.DataFrame) -> list[str]:
    """The perceptual figures a table of ``summary`` shows: those scored on at least one file."""
    return [f for f in PERCEPTUAL if f in summary and summary[f].notna().any()]


def perceptual_cell(row: pd.Series, figure: str) -> str:
    """A perceptual mean as a table shows it: ``3.75``, ``3.75 (41 of 44)`` when some files were
    not scored, ``-`` when none was."""
    value, files = row.get(figure, np.nan), int(row["files"])
    if pd.isna(value):
        return "-"
    scored = int(row.get(f"{figure}_files", files))
    return f"{value:.2f}" + (f" ({scored} of {files})" if scored < files else "")


def markdown_table(summary: pd.DataFrame) -> str:
    shown = shown_perceptual(summary)
    lines = ["| system | files | SNR (dB) | LSD | LSD-HF | LSD / sinc |" + "".join(f" {PERCEPTUAL_LABELS[f]} |" for f in shown), "|---|---:|---:|---:|---:|---:|" + "---:|" * len(shown)]
    for system, r in summary.iterrows():
        lines.append(f"| {system} | {int(r['files'])} | {r['snr']:.2f} | {r['lsd']:.3f} | {r['lsd_hf']:.3f} | {r['lsd_vs_sinc']:.3f} |" + "".join(f" {perceptual_cell(r, f)} |" for f in shown))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# The stage


@dataclass
class EvaluateResult:
    scores: pd.DataFrame
    summary: pd.DataFrame
    out_dir: Path
    errors: list[str] = field(default_factory=list)
    table: str = ""  # what summary.md holds: the table, and how the perceptual scores were made


def evaluate(
    up: Upsampler,
    lowres: str,
    paths: Sequence[Path],
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    settings: UpsamplingSettings | None = None,
    trim_seconds: float = 0.0,
    figures: int = 3,
    excerpt_seconds: float = 8.0,
    perceptual: bool = True,
    perceptual_seconds: float | None = PERCEPTUAL_SECONDS,
    about: dict | None = None,
    quiet: bool = False,
) -> EvaluateResult:
    """Run :func:`evaluate_files` and write ``out_dir`` (see the module docstring). ``about`` (the
    checkpoint and where the files came from) is stored in ``eval.json`` for the report. When the
    perceptual scores are wanted but cannot be had, says why in one ``note:`` line on stderr."""
    out_dir = Path(out_dir)
    paths = list(paths)
    if not paths:
        raise EvaluateError("no files to evaluate")
    if perceptual_seconds is not None and perceptual_seconds < 0:
        raise EvaluateError(f"perceptual seconds: {perceptual_seconds:g}; give 0 (whole files) or more")
    names = list(names) if names is not None else [p.name for p in paths]
    chosen = pick_indices(len(paths), figures)
    samples: list[dict] = []

    def keep(index: int, name: str, signals: dict[str, np.ndarray]) -> None:
        if index in chosen:
            folder = sample_folder_name(index, name)
            save_sample(signals, up.high_rate, up.low_rate, out_dir / "samples" / folder, name, excerpt_seconds)
            samples.append({"file": name, "folder": f"samples/{folder}", "signals": [SIGNAL_LABELS[k] for k in SIGNALS]})

    with_perceptual, note = perceptual_plan(perceptual, up.high_rate)
    if note and not quiet:
        print(f"note: {note}", file=sys.stderr)
    start = time.perf_counter()
    scores = evaluate_files(
        up, up.factor, up.low_rate, lowres, paths, names=names, settings=settings, trim_seconds=trim_seconds, on_file=keep, perceptual=perceptual, perceptual_seconds=perceptual_seconds, quiet=quiet
    )
    errors = scores.attrs["errors"]
    if scores.empty:
        raise EvaluateError(f"none of the {len(paths)} file(s) could be read: {errors[0] if errors else ''}")
    summary = summarize(scores)
    footnote = perceptual_footnote(perceptual_seconds) if shown_perceptual(summary) else ""
    table = markdown_table(summary) + (f"\n\n{footnote}" if footnote else "")
    atomic_write_text(out_dir / "scores.csv", scores.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(out_dir / "summary.md", table + "\n")
    meta = {
        **(about or {}),
        "sample_rate": up.high_rate,
        "low_rate": up.low_rate,
        "factor": up.factor,
        "lowres": lowres,
        "trim_seconds": trim_seconds,
        "files": int(scores["file"].nunique()),
        "failed": len(errors),
        "seconds": float(scores.drop_duplicates("file")["seconds"].sum()),
        "samples": samples,
        "summary": json.loads(summary.reset_index().to_json(orient="records")),
        "perceptual": {
            "scored": with_perceptual,
            "note": note,
            "visqol_mapping": perceptual_metrics.visqol_mapping() if with_perceptual else None,
            "seconds": perceptual_seconds or None,
            "pesq_segment_seconds": perceptual_metrics.PESQ_MAX_SECONDS,
            "footnote": footnote,
        },
    }
    atomic_write_text(out_dir / "eval.json", json.dumps(meta, indent=2) + "\n")
    if not quiet:
        print(table)
        print(f"evaluate: {meta['files']} file(s), {meta['seconds'] / 60:.1f} min of audio, {len(errors)} failed, in {time.perf_counter() - start:.1f} s -> {out_dir}")
    return EvaluateResult(scores, summary, out_dir, errors, table)
