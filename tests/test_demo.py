"""`pipeline demo` (the README's first command), shortened: the same steps with half a minute of training."""

import pandas as pd

from audio_superres.pipeline.demo import run_demo
from audio_superres.settings import load_settings


def test_demo_runs_end_to_end_and_beats_cubic(tmp_path, capsys):
    code = run_demo(tmp_path, load_settings(None), train_minutes=0.5)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "demo: the model beats cubic on LSD" in out
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    means = scores.groupby("system")["lsd"].mean()
    assert means["model"] < means["cubic"]
    for produced in ("run/best.pt", "run/history.csv", "report/index.html", "upsampled/talk_00_4khz_16k.wav", "clips/splits/test.csv"):
        assert (tmp_path / produced).is_file(), produced
