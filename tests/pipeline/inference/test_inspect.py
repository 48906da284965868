"""``pipeline inspect``: rate, channels, duration, measured band and the model chosen, per file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.synth import synth_speech


def _recordings(folder):
    folder.mkdir()
    x = synth_speech(3.0, 16000, seed=3)
    sf.write(str(folder / "wide.wav"), x, 16000)
    sf.write(str(folder / "from4k.flac"), soxr.resample(soxr.resample(x, 16000, 4000), 4000, 16000), 16000)
    sf.write(str(folder / "stereo.wav"), np.stack([x, x], axis=1), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF not really")


def test_inspect_prints_each_file_and_writes_the_csv(tmp_path, capsys):
    _recordings(tmp_path / "in")
    assert main(["inspect", str(tmp_path / "in"), "--csv", str(tmp_path / "t.csv")]) == 1  # one file is broken
    out, err = capsys.readouterr()
    assert "broken.wav" in err and len(err.strip().splitlines()) == 1
    table = pd.read_csv(tmp_path / "t.csv", keep_default_na=False).set_index("file")
    wide, narrow, stereo = (table.loc[str(tmp_path / "in" / n)] for n in ("wide.wav", "from4k.flac", "stereo.wav"))
    assert wide["model"] == "none (already wideband)" and wide["full_band"] == "True"
    assert 1700 <= float(narrow["cutoff_hz"]) <= 2000 and narrow["model"] == "speech-4k"
    assert float(stereo["channels"]) == 2 and float(stereo["seconds"]) == 3.0 and float(stereo["sample_rate"]) == 16000
    assert "from4k.flac: 16000 Hz, 1 ch, 3.0 s, content to 1." in out
