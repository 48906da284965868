"""What an evaluation scores: the files, their names, the trim and the low-res method.

The logic behind ``pipeline evaluate`` and ``pipeline demo`` (both call :func:`plan_evaluation`, then
:func:`~audio_superres.pipeline.evaluation.evaluate.evaluate`). Two sources of high-res files:

* a folder (``--input``): every audio file under it, whole, named by its path inside the folder;
* the test split (default): the whole source recordings whose clips form ``splits/test.csv`` under
  ``data.output_dir``, found under ``data.input_dir`` (the folder the clips were spliced from: the
  split stores paths relative to it), with ``data.trim_seconds`` cut from each end as ``splice``
  does, named by their path inside ``data.input_dir``.

The low-res input is made by the method asked for, else by the first the checkpoint was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from audio_superres.preprocessing.audio import audio_files_in
from audio_superres.preprocessing.tables import TableError, read_table
from audio_superres.settings import DataSettings

from .evaluate import EvaluateError


@dataclass(frozen=True)
class EvaluationPlan:
    """The arguments of one evaluation: ``paths`` named ``names``, ``trim_seconds`` cut from each end,
    the low-res input made by ``lowres``. ``source`` says where the files came from (one line, kept in
    ``eval.json`` for the report); ``note`` is a line worth telling the user about the choice of
    ``lowres`` (None when there is nothing to say)."""

    paths: list[Path]
    names: list[str]
    trim_seconds: float
    source: str
    lowres: str
    note: str | None = None


def choose_lowres(trained_on: str | Sequence[str], asked: str | None = None) -> tuple[str, str | None]:
    """The low-res method to evaluate on, and a note about the choice (or None): ``asked`` when
    given, else the first method of ``trained_on`` (the checkpoint's ``data.lowres``)."""
    trained = [trained_on] if isinstance(trained_on, str) else list(trained_on)
    if asked is not None:
        if trained and asked not in trained:
            return asked, f"evaluating on low-res made by {asked}; the model was trained on low-res made by {', '.join(trained)}"
        return asked, None
    if not trained:
        raise EvaluateError("the checkpoint does not say how its low-res input was made; pass --lowres")
    if len(trained) > 1:
        return trained[0], f"the model was trained on low-res made by {', '.join(trained)}; evaluating on {trained[0]} (--lowres picks another)"
    return trained[0], None


def split_test_sources(data: DataSettings) -> list[Path]:
    """The whole source recordings whose clips form the test split (``splits/test.csv``), in order,
    under ``data.input_dir``. Raises :class:`EvaluateError` (one line) when there is no split, it is
    empty, or its sources are not under ``data.input_dir``."""
    csv = Path(data.output_dir) / "splits" / "test.csv"
    if not csv.is_file():
        raise EvaluateError(f"{csv}: no test split; run `pipeline split` first, or pass --input FOLDER")
    try:
        sources = read_table(csv, text=("source",), remake="re-run `pipeline split`")["source"].dropna().unique()
    except TableError as e:
        raise EvaluateError(str(e)) from None
    if len(sources) == 0:
        raise EvaluateError(f"{csv}: the test split is empty")
    paths = [Path(data.input_dir) / s for s in sources]
    missing = [s for s, p in zip(sources, paths) if not p.is_file()]
    if missing:
        how_many = "none" if len(missing) == len(sources) else f"{len(sources) - len(missing)}"
        raise EvaluateError(
            f"{data.input_dir}: {how_many} of the {len(sources)} source recordings of the test split ({csv}) found there "
            f"({missing[0]} is not); data.input_dir must name the folder the clips were spliced from (or use --input FOLDER)"
        )
    return paths


def plan_evaluation(data: DataSettings, trained_on: str | Sequence[str], *, input_dir: str | Path | None = None, lowres: str | None = None) -> EvaluationPlan:
    """The files, names, trim and low-res method of an evaluation (module docstring): the audio
    files under ``input_dir`` when given, else the test split's source recordings (``data``).
    ``trained_on`` is the checkpoint's ``data.lowres``; ``lowres`` overrides it. Raises
    :class:`EvaluateError` (one line) when there is nothing to evaluate."""
    method, note = choose_lowres(trained_on, lowres)
    if input_dir is not None:
        folder = Path(input_dir)
        if not folder.is_dir():
            raise EvaluateError(f"{folder}: --input must be a folder of high-res audio files")
        paths = audio_files_in(folder)
        if not paths:
            raise EvaluateError(f"{folder}: no audio files in this folder")
        names = [p.relative_to(folder).as_posix() for p in paths]
        return EvaluationPlan(paths, names, 0.0, str(folder), method, note)
    paths = split_test_sources(data)
    names = [p.relative_to(data.input_dir).as_posix() for p in paths]
    trim = data.trim_seconds
    csv = Path(data.output_dir) / "splits" / "test.csv"
    source = f"whole source recordings of the test split ({csv}), {trim:g} s trimmed from each end"
    return EvaluationPlan(paths, names, trim, source, method, note)
