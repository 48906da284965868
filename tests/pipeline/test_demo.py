"""`pipeline demo` (the README's first command), shortened: the same steps with half a minute of training."""

import re

import pandas as pd

from audio_superres.pipeline.demo import HELP, closing_line, run_demo
from audio_superres.settings import load_settings


def test_demo_runs_end_to_end_and_beats_cubic(tmp_path, capsys):
    code = run_demo(tmp_path, load_settings(None), train_minutes=0.5)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "demo: the model beats cubic on LSD" in out
    scores = pd.read_csv(tmp_path / "eval" / "scores.csv")
    means = scores.groupby("system")[["snr", "lsd"]].mean()
    assert means.loc["model", "lsd"] < means.loc["cubic", "lsd"]
    for produced in ("run/best.pt", "run/history.csv", "report/index.html", "upsampled/talk_00_4khz_16k.wav", "clips/splits/test.csv"):
        assert (tmp_path / produced).is_file(), produced
    # the closing line gives SNR and LSD of the model and of both baselines, as scores.csv has them
    last = out.strip().splitlines()[-1]
    assert last.startswith("demo: the model beats cubic on LSD, ")
    for system in ("model", "sinc", "cubic"):
        snr, lsd = re.search(rf"{system} SNR (-?[\d.]+) dB, LSD ([\d.]+)", last).groups()
        # the printed figures are the means rounded to their last digit (within half a unit: the means
        # recomputed here from scores.csv may sit on the other side of a half than the in-memory ones)
        assert abs(float(snr) - means.loc[system, "snr"]) <= 0.005 + 1e-9 and abs(float(lsd) - means.loc[system, "lsd"]) <= 0.0005 + 1e-9


def test_closing_line_says_where_the_model_wins_and_where_not():
    summary = pd.DataFrame({"snr": [12.0, 14.0, 13.5], "lsd": [1.2, 3.9, 3.1], "files": [2, 2, 2]}, index=["model", "sinc", "cubic"])
    line = closing_line(summary, 2)
    assert line.startswith("demo: the model beats cubic on LSD, but not on SNR, on 2 generated test talks")
    assert "model SNR 12.00 dB, LSD 1.200; sinc SNR 14.00 dB, LSD 3.900; cubic SNR 13.50 dB, LSD 3.100" in line
    summary.loc["model", "snr"] = 14.5
    assert "beats cubic on LSD, and on SNR" in closing_line(summary, 2)
    summary.loc["model", "lsd"] = 3.5
    assert "does NOT beat cubic on LSD, but on SNR" in closing_line(summary, 2)


def test_help_names_all_seven_steps_in_order():
    words = ["generate", "splice", "split", "train", "evaluate", "upsample", "report"]
    positions = [HELP.find(w) for w in words]
    assert -1 not in positions and positions == sorted(positions), HELP
