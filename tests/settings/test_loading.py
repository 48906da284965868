"""Reading the settings (:mod:`audio_superres.settings.loading`): a ``--settings`` folder's files,
``--set`` overrides, and one-line errors naming the file, the field and the problem."""

import json
from pathlib import Path

import pytest

from audio_superres.settings import DataSettings, SettingsError, load_settings


def test_missing_folder_is_an_error_and_no_folder_gives_defaults(tmp_path, monkeypatch):
    with pytest.raises(SettingsError, match=r"nowhere: --settings folder does not exist"):
        load_settings(tmp_path / "nowhere")
    monkeypatch.chdir(tmp_path)  # no ./settings here: the built-in defaults
    s = load_settings(None)
    assert s.data == DataSettings()
    assert s.data.low_rate == 4000 and s.data.clip_samples == 32000 and s.data.hop_samples == 32000


def test_overrides_are_typed_and_nested(tmp_path):
    s = load_settings(tmp_path, ["data.factor=2", "data.input_dir=/corpora/ted", 'data.splits={"train":0.8,"val":0.1,"test":0.1}', "data.hop_seconds=1.0"])
    assert s.data.factor == 2 and isinstance(s.data.factor, int)
    assert s.data.input_dir == Path("/corpora/ted")
    assert s.data.splits.train == 0.8 and s.data.hop == 1.0
    s = load_settings(tmp_path, ["data.splits.train=0.7", "data.splits.val=0.1"])
    assert (s.data.splits.train, s.data.splits.val, s.data.splits.test) == (0.7, 0.1, 0.2)


def test_file_values_are_read_and_overrides_win(tmp_path):
    (tmp_path / "data.json").write_text(json.dumps({"factor": 2, "clip_seconds": 1.0}))
    s = load_settings(tmp_path, ["data.clip_seconds=0.5"])
    assert s.data.factor == 2 and s.data.clip_seconds == 0.5


@pytest.mark.parametrize(
    "file_content, overrides, expected",
    [
        ({"bogus": 1}, [], "data.json: data.bogus: unknown key"),
        ({}, ["data.bogus=1"], "--set data.bogus: unknown key"),
        ({"factor": "four"}, [], "data.json: data.factor: Input should be a valid integer"),
        ({}, ["data.factor=1"], "--set data.factor: Input should be greater than or equal to 2"),
        ({}, ["data.splits.train=0.5"], "--set data.splits.train: fractions must sum to 1"),
        ({"splits": {"train": 0.5, "val": 0.2, "test": 0.2}}, [], "data.json: data.splits: fractions must sum to 1"),
        ({"clip_seconds": 0.0001}, [], "clip_seconds (0.0001 s at the low rate 4000 Hz) must be a whole number of samples"),
        ({"factor": 3}, [], "sample_rate 16000 is not divisible by factor 3"),
        ({"lowres": "magic"}, [], "data.lowres: Input should be 'soxr', 'decimate', 'subsample' or 'butterworth'"),
    ],
)
def test_errors_name_file_field_and_problem(tmp_path, file_content, overrides, expected):
    (tmp_path / "data.json").write_text(json.dumps(file_content))
    with pytest.raises(SettingsError) as e:
        load_settings(tmp_path, overrides)
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_malformed_json_and_bad_set_syntax(tmp_path):
    (tmp_path / "training.json").write_text("{ not json")
    with pytest.raises(SettingsError, match=r"training\.json: malformed JSON at line 1"):
        load_settings(tmp_path)
    with pytest.raises(SettingsError, match="expected FILE.KEY=VALUE"):
        load_settings(None, ["data.factor"])
    with pytest.raises(SettingsError, match="key must start with one of data, model, training, upsampling"):
        load_settings(None, ["dta.factor=2"])
    (tmp_path / "training.json").unlink()
    (tmp_path / "model.json").write_text("[1, 2]")
    with pytest.raises(SettingsError, match="model.json: expected a JSON object"):
        load_settings(tmp_path)
