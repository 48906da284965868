"""Reading the pipeline's own CSV tables (``manifest.csv``, ``splits/*.csv``) with one-line errors:
a damaged table (empty, binary, a missing column, text where a number belongs) says what is wrong
and how to remake it, never a traceback from the CSV reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


class TableError(ValueError):
    """A table that cannot be used; the message is one line naming the file and the problem."""


def read_table(path: str | Path, text: tuple[str, ...] = (), numbers: tuple[str, ...] = (), remake: str = "") -> pd.DataFrame:
    """The rows of ``path``, with the ``text`` columns as strings and the ``numbers`` columns checked
    to hold numbers; every named column must be there. ``remake`` says how to make the table again."""
    path = Path(path)
    hint = f"; {remake}" if remake else ""
    try:
        with open(path, "rb") as f:
            header = f.readline()
        # the column names are ours, always UTF-8 text: anything else is a damaged or foreign file
        # (the rows may hold a file name that is not UTF-8: read with surrogateescape, as written)
        if not header.strip():
            raise ValueError("empty")
        if b"\0" in header:
            raise ValueError("not CSV text")
        header.decode("utf-8")
        rows = pd.read_csv(path, dtype={c: str for c in text}, encoding="utf-8", encoding_errors="surrogateescape")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TableError(f"{path}: not a readable table ({first}){hint}") from None
    missing = [c for c in (*text, *numbers) if c not in rows.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {', '.join(missing)}{hint}")
    for column in numbers:
        values = pd.to_numeric(rows[column], errors="coerce")
        bad = values.isna()  # text, or an empty cell
        if bad.any():
            row = int(bad.idxmax())
            raise TableError(f"{path}: column {column} holds {rows[column][row]!r} on line {row + 2}, not a number{hint}")
        rows[column] = values
    return rows
