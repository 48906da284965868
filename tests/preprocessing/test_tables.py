"""Damaged tables of the pipeline's own (manifest, splits) give one line, never a traceback."""

from __future__ import annotations

import pytest

from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.tables import TableError, read_table

GOOD = "clip_id,talk,source,seconds\na_00000,a,a.wav,2.0\n"


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "not a readable table"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage", "not a readable table"),
        (b"clip_id,source,seconds\na_00000,a.wav,2.0\n", r"missing column\(s\) talk"),
        (b"clip_id,talk,source,seconds\na_00000,a,a.wav,two\n", "column seconds holds 'two' on line 2, not a number"),
    ],
)
def test_damaged_tables_are_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "manifest.csv"
    path.write_bytes(content)
    with pytest.raises(TableError, match=problem):
        read_table(path, text=("clip_id", "talk", "source"), numbers=("seconds",))


def test_split_of_a_damaged_manifest_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "manifest.csv").write_text(GOOD.replace("2.0", "lots"))
    assert main(["split", "--set", f"data.output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest.csv: column seconds holds 'lots'" in err[0] and "re-run `pipeline splice`" in err[0]
