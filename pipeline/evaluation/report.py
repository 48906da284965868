"""``pipeline report``: a static HTML page of an evaluation, to listen and look (in the manner of the
sample pages of audio super-resolution papers).

Reads what ``pipeline evaluate`` wrote (``eval.json``, ``scores.csv``, ``samples/``) and writes a
self-contained folder: ``index.html`` with the summary table (SNR, LSD, LSD-HF and, when evaluate
scored them, ViSQOL and PESQ-WB with the quality mapping ViSQOL used), then for each sample file its
scores, audio players and spectrograms of the same five signals (high-res, low-res, sinc, cubic,
model: both baselines), the audio and images copied beside it. No remote assets: the page works
offline and from a copied folder.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from pathlib import Path

import pandas as pd

from audio_superres.preprocessing.audio import atomic_path, atomic_write_text

from .evaluate import PERCEPTUAL, PERCEPTUAL_LABELS
from .samples import SIGNAL_LABELS, SIGNALS

# the order of the spectrogram panels too (samples.SIGNALS)
PLAYERS = (("highres", "high-res (reference)"), ("lowres", "low-res (input)"), ("sinc", "sinc"), ("cubic", "cubic"), ("model", "model"))
# what evaluations written before the sinc panel existed show in their spectrogram.png
OLD_PANELS = ["high-res", "low-res", "cubic", "model"]

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } .about { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; } th, td { padding: 0.35em 0.9em; border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.model td { font-weight: 600; }
section.sample { border-top: 1px solid #ccc; padding-top: 1em; margin-top: 2em; }
.players { display: grid; grid-template-columns: repeat(5, 1fr); gap: 0.8em; margin: 0.8em 0; }
.players figure { margin: 0; } .players figcaption { font-size: 0.9em; color: #444; margin-bottom: 0.3em; }
audio { width: 100%; } img { max-width: 100%; border: 1px solid #eee; }
.scores { font-size: 0.9em; color: #444; }
"""


class ReportError(Exception):
    """The evaluation folder cannot be used; the message is one line."""


def _num(x: float | None, digits: int) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _shown_perceptual(summary: list[dict]) -> list[str]:
    """The perceptual figures scored on at least one file (none in evaluations made without them)."""
    return [f for f in PERCEPTUAL if any(r.get(f) is not None for r in summary)]


def _perceptual_cell(r: dict, figure: str) -> str:
    value, files = r.get(figure), int(r["files"])
    if value is None:
        return "-"
    scored = int(r.get(f"{figure}_files") or files)
    return f"{value:.2f}" + (f" ({scored} of {files})" if scored < files else "")


def _summary_table(summary: list[dict]) -> str:
    shown = _shown_perceptual(summary)
    head = "<tr><th>system</th><th>files</th><th>SNR (dB)</th><th>LSD</th><th>LSD-HF</th><th>LSD / sinc</th>" + "".join(f"<th>{PERCEPTUAL_LABELS[f]}</th>" for f in shown) + "</tr>"
    rows = [
        f'<tr class="{html.escape(r["system"])}"><td>{html.escape(r["system"])}</td><td class="num">{int(r["files"])}</td>'
        f'<td class="num">{_num(r["snr"], 2)}</td><td class="num">{_num(r["lsd"], 3)}</td>'
        f'<td class="num">{_num(r["lsd_hf"], 3)}</td><td class="num">{_num(r["lsd_vs_sinc"], 3)}</td>' + "".join(f'<td class="num">{html.escape(_perceptual_cell(r, f))}</td>' for f in shown) + "</tr>"
        for r in summary
    ]
    return f'<table id="summary">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _file_scores(scores: pd.DataFrame, name: str) -> str:
    mine = scores[scores["file"] == name]
    parts = []
    for r in mine.to_dict("records"):
        text = f"{r['system']}: SNR {r['snr']:.2f} dB, LSD {r['lsd']:.3f}, LSD-HF {r['lsd_hf']:.3f}"
        text += "".join(f", {PERCEPTUAL_LABELS[f]} {r[f]:.2f}" for f in PERCEPTUAL if pd.notna(r.get(f, math.nan)))
        parts.append(text)
    return html.escape(" · ".join(parts))


def _sample_section(sample: dict, eval_dir: Path, out_dir: Path, dst_rel: str, scores: pd.DataFrame) -> str:
    """One sample file's section: its scores, players and spectrograms, the files copied to ``dst_rel``."""
    src = eval_dir / sample["folder"]
    (out_dir / dst_rel).mkdir(parents=True, exist_ok=True)
    players = []
    for key, label in PLAYERS:
        if not (src / f"{key}.wav").is_file():
            raise ReportError(f"{src / f'{key}.wav'}: sample audio missing; run `pipeline evaluate` again")
        with atomic_path(out_dir / dst_rel / f"{key}.wav") as tmp:
            shutil.copyfile(src / f"{key}.wav", tmp)
        players.append(f'<figure><figcaption>{html.escape(label)}</figcaption><audio controls preload="metadata" src="{dst_rel}/{key}.wav"></audio></figure>')
    image = ""
    if (src / "spectrogram.png").is_file():
        with atomic_path(out_dir / dst_rel / "spectrogram.png") as tmp:
            shutil.copyfile(src / "spectrogram.png", tmp)
        panels = ", ".join(sample.get("signals", OLD_PANELS))
        image = f'<img src="{dst_rel}/spectrogram.png" alt="spectrograms of {html.escape(sample["file"])}: {html.escape(panels)}">'
    return (
        f'<section class="sample">\n<h3>{html.escape(sample["file"])}</h3>\n'
        f'<p class="scores">{_file_scores(scores, sample["file"])}</p>\n'
        f'<div class="players">\n' + "\n".join(players) + f"\n</div>\n{image}\n</section>"
    )


def build_report(eval_dir: str | Path, out_dir: str | Path, max_samples: int | None = None, quiet: bool = False) -> Path:
    """Write ``out_dir/index.html`` (and the audio and images it shows) from ``eval_dir``. Returns
    the page's path."""
    eval_dir, out_dir = Path(eval_dir), Path(out_dir)
    meta_path, scores_path = eval_dir / "eval.json", eval_dir / "scores.csv"
    for needed in (meta_path, scores_path):
        if not needed.is_file():
            raise ReportError(f"{needed}: not found; run `pipeline evaluate -o {eval_dir}` first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        scores = pd.read_csv(scores_path, dtype={"file": str}, encoding="utf-8", encoding_errors="surrogateescape")
    except (ValueError, OSError) as e:
        raise ReportError(f"{eval_dir}: cannot read the evaluation ({e})") from None

    samples = meta.get("samples", [])[:max_samples]
    sections = [_sample_section(sample, eval_dir, out_dir, f"samples/{k:02d}", scores) for k, sample in enumerate(samples)]

    title = "Audio super-resolution: evaluation"
    about = (
        f"{meta.get('files', '?')} file(s), {meta.get('seconds', 0) / 60:.1f} min of audio; "
        f"{meta.get('low_rate')} Hz → {meta.get('sample_rate')} Hz (×{meta.get('factor')}), "
        f"low-res made by {meta.get('lowres')}; every output rounded to 16 bits before scoring."
    )
    if meta.get("checkpoint"):
        about += f" Checkpoint: {meta['checkpoint']}."
    if meta.get("source"):
        about += f" Files: {meta['source']}."
    perceptual = meta.get("perceptual") or {}
    if perceptual.get("footnote") and _shown_perceptual(meta["summary"]):
        perceptual_text = f'<p class="scores">{html.escape(perceptual["footnote"])}</p>'
    elif perceptual.get("note"):
        perceptual_text = f'<p class="scores">No perceptual scores: {html.escape(perceptual["note"])}.</p>'
    else:
        perceptual_text = ""
    panels = ", ".join(samples[0].get("signals", OLD_PANELS)) if samples else ", ".join(SIGNAL_LABELS[k] for k in SIGNALS)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p class="about">{html.escape(about)}</p>
<h2>Summary (mean over files)</h2>
{_summary_table(meta["summary"])}
<p class="scores">SNR: higher is better. LSD and LSD-HF (above {html.escape(str(meta.get("low_rate", 0) / 2000))} kHz, the band the model
invents): lower is better. LSD / sinc: the model's log-spectral distance as a fraction of band-limited resampling's.</p>
{perceptual_text}
<h2>Samples</h2>
<p class="scores">Excerpts of the same signals to listen to and to look at: players and spectrograms (left to right) of {html.escape(panels)}.</p>
{chr(10).join(sections) if sections else "<p>No samples: run <code>pipeline evaluate --figures N</code> with N &gt; 0.</p>"}
</body>
</html>
"""
    index = out_dir / "index.html"
    atomic_write_text(index, page)
    if not quiet:
        print(f"report: {len(sections)} sample(s), summary of {meta.get('files', '?')} file(s) -> {index}")
    return index
