"""``pipeline report``: the static page of an evaluation, checked as a browser renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from audio_superres.pipeline.evaluation.evaluate import evaluate
from audio_superres.pipeline.inference import Upsampler
from audio_superres.models.interpolation import Interpolator
from audio_superres.pipeline.cli import main
from audio_superres.pipeline.evaluation.report import build_report

from .conftest import write_talk
from .test_inference import FACTOR, LOW

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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
    assert len(audio) == 2 * 4  # two samples: high-res, low-res, sinc, model
    images = [a["src"] for tag, a in page.tags if tag == "img"]
    assert len(images) == 2
    for src in audio + images:
        assert not re.match(r"^[a-z]+:", src), f"remote or absolute asset {src}"
        assert (tmp_path / "report" / src).is_file()
    assert not re.search(r"(src|href)=\"(https?:)?//", index.read_text(encoding="utf-8"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_renders_in_headless_chromium(eval_dir, tmp_path):
    index = build_report(eval_dir, tmp_path / "report", quiet=True)
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", index.resolve().as_uri(),
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    page = _parse(dom)  # the DOM as the browser built it, not the file as written
    rows = [a for tag, a in page.tags if tag == "tr"]
    assert len(rows) == 4  # header, model, sinc, cubic
    assert [a["src"] for tag, a in page.tags if tag == "audio"] == [f"samples/{k:02d}/{s}.wav" for k in range(2) for s in ("highres", "lowres", "sinc", "model")]
    assert "model" in page.cells and "sinc" in page.cells


def test_cli_report_from_missing_evaluation_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", "--eval", str(tmp_path / "none"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "eval.json: not found; run `pipeline evaluate" in err and len(err.strip().splitlines()) == 1


def test_cli_report_writes_the_folder(eval_dir, tmp_path):
    assert main(["report", "--eval", str(eval_dir), "-o", str(tmp_path / "r"), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "r" / "samples" / "00").iterdir()) == ["highres.wav", "lowres.wav", "model.wav", "sinc.wav", "spectrogram.png"]
