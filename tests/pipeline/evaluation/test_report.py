"""``pipeline report``: the static page of an evaluation, checked as a browser renders it."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from audio_superres.models.interpolation import Interpolator
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.evaluation import perceptual
from audio_superres.pipeline.evaluation.evaluate import evaluate
from audio_superres.pipeline.evaluation.report import build_report
from audio_superres.pipeline.inference import Upsampler

from ...conftest import write_talk
from ..conftest import FACTOR, LOW

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIGNALS = ("highres", "lowres", "sinc", "cubic", "model")  # players and spectrogram panels, in order


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    paths = [write_talk(root / "talks" / f"talk{i}.flac", 2.0, seed=i) for i in range(3)]
    evaluate(Upsampler(Interpolator(FACTOR, "cubic"), FACTOR, LOW), "soxr", paths, root / "eval", figures=2, excerpt_seconds=1.0, quiet=True)
    return root / "eval"


class _Elements(HTMLParser):
    """Tags with their attributes, and the text of table cells, of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell and data.strip():
            self.cells.append(data.strip())


def _parse(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


def test_page_has_table_players_and_local_assets_only(eval_dir, tmp_path):
    index = build_report(eval_dir, tmp_path / "report", quiet=True)
    page = _parse(index.read_text(encoding="utf-8"))
    assert {"system", "SNR (dB)", "LSD", "LSD-HF", "model", "sinc", "cubic"} <= set(page.cells)
    audio = [a["src"] for tag, a in page.tags if tag == "audio"]
    assert audio == [f"samples/{k:02d}/{s}.wav" for k in range(2) for s in SIGNALS]  # both baselines heard
    images = [a for tag, a in page.tags if tag == "img"]
    assert len(images) == 2
    # the spectrograms show the signals the players play, in the same order, and the page says so
    assert all(a["alt"].endswith(": high-res, low-res, sinc, cubic, model") for a in images)
    assert "players and spectrograms (left to right) of high-res, low-res, sinc, cubic, model" in index.read_text(encoding="utf-8")
    images = [a["src"] for a in images]
    for src in audio + images:
        assert not re.match(r"^[a-z]+:", src), f"remote or absolute asset {src}"
        assert (tmp_path / "report" / src).is_file()
    assert not re.search(r"(src|href)=\"(https?:)?//", index.read_text(encoding="utf-8"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_renders_in_headless_chromium(eval_dir, tmp_path):
    index = build_report(eval_dir, tmp_path / "report", quiet=True)
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        index.resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    page = _parse(dom)  # the DOM as the browser built it, not the file as written
    rows = [a for tag, a in page.tags if tag == "tr"]
    assert len(rows) == 4  # header, model, sinc, cubic
    assert [a["src"] for tag, a in page.tags if tag == "audio"] == [f"samples/{k:02d}/{s}.wav" for k in range(2) for s in SIGNALS]
    assert "model" in page.cells and "sinc" in page.cells


def test_cli_report_from_missing_evaluation_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--eval", str(tmp_path / "none"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "eval.json: not found; run `pipeline evaluate" in err and len(err.strip().splitlines()) == 1


def test_cli_report_writes_the_folder(eval_dir, tmp_path):
    assert main(["report", "--eval", str(eval_dir), "-o", str(tmp_path / "r"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "r" / "samples" / "00").iterdir()) == ["cubic.wav", "highres.wav", "lowres.wav", "model.wav", "sinc.wav", "spectrogram.png"]


@pytest.mark.skipif(not all(perceptual.available().values()), reason=perceptual.MISSING_HINT)
def test_summary_table_shows_the_perceptual_scores_and_their_mapping(eval_dir, tmp_path):
    index = build_report(eval_dir, tmp_path / "report", quiet=True)
    text = index.read_text(encoding="utf-8")
    page = _parse(text)
    assert {"ViSQOL", "PESQ-WB"} <= set(page.cells)
    sinc = pd.read_csv(eval_dir / "scores.csv").query("system == 'sinc'")[["visqol", "pesq_wb"]].mean()
    assert f"{sinc['visqol']:.2f}" in page.cells and f"{sinc['pesq_wb']:.2f}" in page.cells
    assert html.escape(f"quality mapping {perceptual.visqol_mapping()}") in text
    assert ", ViSQOL " in text and ", PESQ-WB " in text  # per sample file, too


def test_an_evaluation_without_perceptual_scores_has_no_such_columns(tmp_path):
    paths = [write_talk(tmp_path / "talks" / f"talk{i}.flac", 1.0, seed=i) for i in range(2)]
    evaluate(Upsampler(Interpolator(FACTOR, "cubic"), FACTOR, LOW), "soxr", paths, tmp_path / "eval", figures=1, excerpt_seconds=0.5, perceptual=False, quiet=True)
    page = _parse(build_report(tmp_path / "eval", tmp_path / "report", quiet=True).read_text(encoding="utf-8"))
    assert "LSD-HF" in page.cells and "ViSQOL" not in page.cells and "PESQ-WB" not in page.cells
