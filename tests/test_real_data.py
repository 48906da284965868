"""The foundation issue's acceptance run on the real talks in ../shared/data (skipped when absent)."""

import shutil

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from audio_superres.pipeline.cli import main

from .conftest import empty_settings


def test_ten_talks_plus_a_corrupt_file(shared_data, tmp_path, capsys):
    talks = tmp_path / "talks"
    talks.mkdir()
    for src in sorted((shared_data / "speech" / "talks").glob("*.flac")):
        (talks / src.name).symlink_to(src)
    (talks / "corrupt.flac").write_bytes(b"fLaC" + bytes(range(256)) * 8)
    out = tmp_path / "clips"
    args = ["--settings", str(empty_settings(tmp_path / "none")), "--set", f"data.input_dir={talks}", "--set", f"data.output_dir={out}", "--quiet"]
    assert main(["splice", *args]) == 1
    assert f"error: {talks / 'corrupt.flac'}: " in capsys.readouterr().err
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest.talk.nunique() == 10
    assert main(["split", *args]) == 0
    counts = [pd.read_csv(out / "splits" / f"{s}.csv").talk.nunique() for s in ("train", "val", "test")]
    assert counts == [6, 2, 2]
    for row in manifest.sample(20, random_state=0).itertuples():
        hr, _ = sf.read(str(out / row.hr_path), dtype="float32")
        lr, rate = sf.read(str(out / row.lr_path), dtype="float32")
        assert rate == 4000
        np.testing.assert_allclose(lr, soxr.resample(hr, 16000, 4000, quality="HQ"), atol=1.01 / 32768)
    shutil.rmtree(out)
