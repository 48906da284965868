"""Where the outputs go (:mod:`audio_superres.pipeline.inference.folders`): a folder mirrored with
the same stems, a one-file output that must be a new .wav, never an input overwritten."""

from __future__ import annotations

import soundfile as sf

from audio_superres.pipeline.cli import main
from audio_superres.pipeline.inference import plan_outputs

from ..conftest import FACTOR, HIGH, LOW
from .conftest import _write


def test_plan_outputs_mirrors_a_folder_and_refuses_to_overwrite_inputs(tmp_path):
    src = tmp_path / "in"
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    pairs, errors = plan_outputs([src], tmp_path / "out", HIGH)
    assert errors == []
    assert sorted(d.relative_to(tmp_path / "out").as_posix() for _, d in pairs) == ["a.wav", "sub/b.wav", "sub/deeper/c.wav"]
    pairs, errors = plan_outputs([src], src, HIGH)  # output folder = input folder: a.wav would be replaced
    assert pairs == [] and any("the output folder is this input folder itself" in e for e in errors)
    assert all(s.resolve() != d.resolve() for s, d in pairs)


def test_folder_is_mirrored_with_same_stems(tmp_path, checkpoint):
    src = tmp_path / "talks"
    for rel in ("a.wav", "sub/b.flac", "sub/deeper/c.wav"):
        _write(src / rel, 0.5)
    (src / "notes.txt").write_text("not audio")
    out = tmp_path / "up"
    assert main(["upsample", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "--quiet"]) == 0
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a.wav", "sub/b.wav", "sub/deeper/c.wav"]
    assert all(sf.info(out / w).frames == FACTOR * 2000 for w in written)


def test_one_file_output_must_be_a_new_wav(tmp_path, checkpoint, capsys):
    src = _write(tmp_path / "a.wav", 0.2)
    assert main(["upsample", str(src), "-o", str(tmp_path / "a.flac"), "--checkpoint", str(checkpoint), "-q"]) == 2
    assert main(["upsample", str(src), "-o", str(src), "--checkpoint", str(checkpoint), "-q"]) == 2
    err = capsys.readouterr().err
    assert "a.flac: the output is a WAV file; name it .wav" in err and "would overwrite the input" in err
    assert sf.info(src).samplerate == LOW and not (tmp_path / "a.flac").exists()
