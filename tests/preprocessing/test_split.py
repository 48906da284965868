import numpy as np
import pandas as pd

from audio_superres.pipeline.cli import main
from audio_superres.preprocessing.split import assign_groups, split_manifest
from audio_superres.settings import Splits

from ..conftest import empty_settings


def fake_manifest(clips_per_talk: dict[str, int]) -> pd.DataFrame:
    rows = [
        {"clip_id": f"{t}_{i:05d}", "talk": t, "source": f"{t}.flac", "start_s": 2.0 * i, "seconds": 2.0, "hr_path": f"hr/{t}/{i}.flac", "lr_path": f"lr/{t}/{i}.flac", "rms_db": -20.0}
        for t, n in clips_per_talk.items()
        for i in range(n)
    ]
    return pd.DataFrame(rows)


def test_ten_similar_talks_give_6_2_2_and_whole_talks():
    rng = np.random.default_rng(0)
    manifest = fake_manifest({f"talk{i}": int(rng.integers(320, 470)) for i in range(10)})
    parts = split_manifest(manifest, Splits(), "talk", seed=0)
    assert [parts[s].talk.nunique() for s in ("train", "val", "test")] == [6, 2, 2]
    talks = [set(parts[s].talk) for s in ("train", "val", "test")]
    assert not (talks[0] & talks[1]) and not (talks[0] & talks[2]) and not (talks[1] & talks[2])
    assert sum(len(p) for p in parts.values()) == len(manifest)
    assert list(parts["train"].columns) == list(manifest.columns)


def test_fractions_met_by_duration_with_many_talks():
    rng = np.random.default_rng(1)
    durations = rng.uniform(60, 1200, 200)
    assignment = assign_groups(durations, (0.6, 0.2, 0.2), seed=0)
    shares = np.bincount(assignment, weights=durations) / durations.sum()
    np.testing.assert_allclose(shares, [0.6, 0.2, 0.2], atol=0.005)


def test_deterministic_for_a_seed_and_seed_matters():
    manifest = fake_manifest({f"t{i:02d}": 10 for i in range(20)})
    a = split_manifest(manifest, Splits(), "talk", seed=3)
    b = split_manifest(manifest, Splits(), "talk", seed=3)
    assert all(a[s].equals(b[s]) for s in a)
    others = [set(split_manifest(manifest, Splits(), "talk", seed=s)["test"].talk) for s in range(5)]
    assert len({frozenset(o) for o in others}) > 1


def test_zero_fraction_split_is_empty():
    parts = split_manifest(fake_manifest({f"t{i}": 5 for i in range(5)}), Splits(train=0.8, val=0.0, test=0.2), "talk")
    assert parts["val"].empty and parts["train"].talk.nunique() == 4


def test_split_by_clip_mixes_talks():
    manifest = fake_manifest({"a": 50, "b": 50})
    parts = split_manifest(manifest, Splits(), "clip", seed=0)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [60, 20, 20]
    assert set(parts["test"].talk) == {"a", "b"}  # the leak that split_by=talk prevents


def test_cli_writes_csvs_and_prints_table(tmp_path, capsys):
    fake_manifest({f"t{i}": 10 for i in range(10)}).to_csv(tmp_path / "manifest.csv", index=False)
    assert main(["split", "--settings", str(empty_settings(tmp_path / "none")), "--set", f"data.output_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "train       6      60" in out and "split: 10 talks, 100 clips" in out
    for name in ("train", "val", "test"):
        assert len(pd.read_csv(tmp_path / "splits" / f"{name}.csv")) > 0


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["split", "--settings", str(tmp_path), "--set", f"data.output_dir={tmp_path}"]) == 2
    assert "manifest.csv: no manifest; run `pipeline splice` first" in capsys.readouterr().err
