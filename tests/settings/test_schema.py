"""The settings schema (:mod:`audio_superres.settings.schema`): its defaults are the repository's
settings files, and its fields' choices (model names, backends)."""

import json

import pytest

from audio_superres.settings import SETTINGS_MODELS, ModelSettings, SettingsError, load_settings

from ..conftest import REPO, empty_settings


def test_repo_files_show_the_defaults():
    for name, model in SETTINGS_MODELS.items():
        on_disk = json.loads((REPO / "settings" / f"{name}.json").read_text())
        assert on_disk == model().model_dump(mode="json"), f"settings/{name}.json differs from the defaults in code"


def test_unknown_model_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"'bwe', 'audiounet' or 'tfnet'"):
        ModelSettings(name="nope")


def test_settings_default_to_local_and_take_an_address(tmp_path):
    settings = load_settings(empty_settings(tmp_path), [])
    assert (settings.data.backend, settings.upsampling.backend, settings.data.dask_address) == ("local", "local", None)
    settings = load_settings(empty_settings(tmp_path), ["data.backend=dask", "data.dask_address=tcp://127.0.0.1:8786", "upsampling.backend=dask"])
    assert (settings.data.backend, settings.data.dask_address, settings.upsampling.backend) == ("dask", "tcp://127.0.0.1:8786", "dask")
    with pytest.raises(SettingsError, match="backend"):
        load_settings(empty_settings(tmp_path), ["data.backend=spark"])
