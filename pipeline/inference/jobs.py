"""One file's work in ``pipeline upsample``: where it goes and by which route (shared by the local
run and the Dask cluster run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

COPY = "copied in band"


@dataclass
class Job:
    source: Path
    output: Path
    seconds: float
    route: str  # a shipped model's name, "checkpoint", or COPY
    note: str  # one line: what was measured and what was chosen
