"""What evaluate scores (:mod:`audio_superres.pipeline.evaluation.plan`): the test split's source
recordings or a folder, and the low-res method; one-line errors when the split or its sources are
missing."""

from __future__ import annotations

import pandas as pd
import pytest

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.evaluation.evaluate import EvaluateError
from audio_superres.pipeline.evaluation.plan import choose_lowres, plan_evaluation, split_test_sources

from ...conftest import data_settings, write_talk
from ..conftest import save_tiny_checkpoint, spliced_talks


def test_missing_test_split_is_a_one_line_error(tmp_path, capsys):
    ckpt = save_tiny_checkpoint(tmp_path / "t.pt")
    assert main(["evaluate", "--checkpoint", str(ckpt), "--set", f"data.output_dir={tmp_path / 'nothing'}", "-o", str(tmp_path / "e")]) == 2
    assert "no test split" in capsys.readouterr().err


@pytest.fixture
def spliced(tmp_path):
    """5 generated talks of 4 s, spliced and split: (talks folder, clips folder)."""
    return spliced_talks(tmp_path, 4.0)


def test_test_split_sources_not_under_input_dir_blame_the_setting_in_one_line(spliced, tmp_path, capsys):
    # the clips were spliced from talks/, but data.input_dir still names the default folder: the
    # error must say so, not report every source as an unreadable file
    talks, clips = spliced
    ckpt = save_tiny_checkpoint(tmp_path / "t.pt")
    code = main(["evaluate", "--checkpoint", str(ckpt), "--set", f"data.output_dir={clips}", "--set", f"data.input_dir={tmp_path / 'elsewhere'}", "-o", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "data.input_dir must name the folder the clips were spliced from (or use --input" in err
    assert str(tmp_path / "elsewhere") in err and "none of the 1 source recordings of the test split" in err
    assert not (tmp_path / "e").exists()


def test_some_test_split_sources_missing_says_how_many(tmp_path):
    (tmp_path / "clips" / "splits").mkdir(parents=True)
    pd.DataFrame({"clip_id": ["a_0", "b_0", "b_1"], "source": ["a.flac", "sub/b.flac", "sub/b.flac"]}).to_csv(tmp_path / "clips" / "splits" / "test.csv", index=False)
    write_talk(tmp_path / "talks" / "a.flac", 1.0)
    with pytest.raises(EvaluateError, match=r"1 of the 2 source recordings of the test split .* \(sub/b.flac is not\); data.input_dir must name"):
        split_test_sources(data_settings(tmp_path / "talks", tmp_path / "clips"))
    write_talk(tmp_path / "talks" / "sub" / "b.flac", 1.0)
    assert split_test_sources(data_settings(tmp_path / "talks", tmp_path / "clips")) == [tmp_path / "talks" / "a.flac", tmp_path / "talks" / "sub" / "b.flac"]


def test_plan_of_the_test_split_and_of_a_folder(spliced):
    talks, clips = spliced
    data = data_settings(talks, clips)
    plan = plan_evaluation(data, ["soxr"])
    test_talks = list(pd.read_csv(clips / "splits" / "test.csv")["source"].unique())
    assert plan.names == test_talks and plan.paths == [talks / t for t in test_talks]
    assert plan.trim_seconds == 1.0 and plan.lowres == "soxr" and plan.note is None
    assert "test split" in plan.source and "1 s trimmed" in plan.source

    (talks / "sub").mkdir()
    write_talk(talks / "sub" / "extra.wav", 1.0)
    plan = plan_evaluation(data, "soxr", input_dir=talks, lowres="decimate")
    assert plan.names == ["sub/extra.wav"] + [f"talk{i}.flac" for i in range(5)]
    assert plan.trim_seconds == 0.0 and plan.source == str(talks)
    assert plan.lowres == "decimate" and "trained on low-res made by soxr" in plan.note
    with pytest.raises(EvaluateError, match="--input must be a folder"):
        plan_evaluation(data, "soxr", input_dir=talks / "talk0.flac")
    (talks.parent / "empty").mkdir()
    with pytest.raises(EvaluateError, match="no audio files"):
        plan_evaluation(data, "soxr", input_dir=talks.parent / "empty")


def test_lowres_choice_and_its_note():
    assert choose_lowres(["soxr"]) == ("soxr", None)
    assert choose_lowres("decimate") == ("decimate", None)
    method, note = choose_lowres(["soxr", "decimate"])
    assert method == "soxr" and "trained on low-res made by soxr, decimate" in note and "--lowres" in note
    assert choose_lowres(["soxr", "decimate"], "decimate") == ("decimate", None)
    with pytest.raises(EvaluateError, match="pass --lowres"):
        choose_lowres([])
