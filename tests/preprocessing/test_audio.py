import numpy as np
import pytest
import soundfile as sf
import soxr

from audio_superres.preprocessing.audio import AudioError, atomic_path, read_audio, to_pcm16, write_audio

from ..conftest import tone


def test_channels_averaged_and_rate_converted(tmp_path):
    left, right = tone(440, 1.0, 44100, 0.4), tone(440, 1.0, 44100, 0.2)
    sf.write(str(tmp_path / "st.wav"), np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    x, sr = read_audio(tmp_path / "st.wav", 16000)
    assert sr == 16000 and x.dtype == np.float32 and x.ndim == 1 and len(x) == 16000
    assert abs(np.abs(x[1000:-1000]).max() - 0.3) < 0.01  # average of 0.4 and 0.2
    multi, sr = read_audio(tmp_path / "st.wav", mono=False)
    assert multi.shape == (44100, 2) and sr == 44100


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT"])
def test_bit_depths_read(tmp_path, subtype):
    path = tmp_path / f"x_{subtype}.wav"
    sf.write(str(path), tone(300, 0.5, 16000), 16000, subtype=subtype)
    x, _ = read_audio(path, 16000)
    assert np.max(np.abs(x - tone(300, 0.5, 16000))) < 0.02


def _sphere(path, coding: str) -> None:
    header = f"NIST_1A\n   1024\nchannel_count -i 1\nsample_rate -i 16000\nsample_n_bytes -i 2\nsample_coding -s{len(coding)} {coding}\nsample_count -i 100\nend_head\n"
    path.write_bytes(header.encode().ljust(1024, b" ") + b"\x01\x02" * 100)


def test_bad_inputs_raise_one_line_naming_the_file(tmp_path):
    cases = {}
    (tmp_path / "empty.wav").write_bytes(b"")
    cases["empty.wav"] = "empty file (0 bytes)"
    (tmp_path / "noise.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    cases["noise.wav"] = "not a readable audio file"
    sf.write(str(tmp_path / "full.wav"), tone(200, 1.0, 16000), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    cases["cut.wav"] = "truncated: header promises 32000 bytes of audio, file holds"
    _sphere(tmp_path / "shorten.sph", "pcm,embedded-shorten-v2.00")
    cases["shorten.sph"] = "shorten-compressed NIST SPHERE"
    sf.write(str(tmp_path / "nan.wav"), np.array([0.1, np.nan, 0.2, np.inf], dtype=np.float32), 16000, subtype="FLOAT")
    cases["nan.wav"] = "holds NaN or infinite samples"
    (tmp_path / "dir.wav").mkdir()
    cases["dir.wav"] = "is a folder, not an audio file"
    for name, problem in cases.items():
        with pytest.raises(AudioError) as e:
            read_audio(tmp_path / name, 16000)
        assert str(e.value).startswith(str(tmp_path / name) + ": ") and problem in str(e.value), str(e.value)
        assert "\n" not in str(e.value)


def test_plain_sphere_reads(tmp_path):
    path = tmp_path / "talk.sph"
    sf.write(str(path), tone(200, 0.5, 16000), 16000, format="NIST", subtype="PCM_16")
    x, sr = read_audio(path)
    assert sr == 16000 and len(x) == 8000


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out" / "clip.flac"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert not target.exists() and list(target.parent.iterdir()) == []
    write_audio(target, tone(100, 0.1, 16000), 16000)
    assert sf.info(str(target)).subtype == "PCM_16" and [p.name for p in target.parent.iterdir()] == ["clip.flac"]


def test_pcm16_rounding_is_what_the_file_holds(tmp_path):
    x = np.random.default_rng(0).uniform(-1.2, 1.2, 1000).astype(np.float32)
    write_audio(tmp_path / "q.wav", x, 16000)
    back, _ = sf.read(str(tmp_path / "q.wav"), dtype="float32")
    assert np.array_equal(back, to_pcm16(x))


def test_mp3_read_in_blocks_gives_the_samples_of_one_whole_read(tmp_path):
    # python-soundfile seeks after every read, and a seek restarts the MP3 decoder: block edges came back
    # with up to ~2000 wrong samples (zeros first), 1.9 dB of SNR lost on a real 44.1 kHz speech MP3
    from audio_superres.preprocessing.audio import read_blocks
    from audio_superres.preprocessing.synth import synth_speech

    path = tmp_path / "speech.mp3"
    sf.write(str(path), soxr.resample(synth_speech(12.0, 16000), 16000, 44100).astype(np.float32), 44100, format="MP3")
    whole, _ = sf.read(str(path), dtype="float32", always_2d=True)
    with sf.SoundFile(str(path)) as f:
        blocks = np.concatenate(list(read_blocks(f, 4096)))
    assert blocks.shape == whole.shape
    np.testing.assert_array_equal(blocks, whole)


def test_names_that_are_not_utf8_or_longer_than_libsndfile_takes_are_read_and_written(tmp_path):
    # soundfile encoded a str name strictly (UnicodeEncodeError on a name that is not UTF-8), and
    # libsndfile refuses a name over 1023 bytes ("Supplied filename too long")
    import os
    from pathlib import Path

    from audio_superres.preprocessing.audio import audio_info

    odd = Path(os.fsdecode(bytes(tmp_path) + b"/talk_\xff.wav"))
    deep = tmp_path.joinpath(*["d" * 200] * 6) / "talk.wav"
    deep.parent.mkdir(parents=True)
    for path in (odd, deep):
        write_audio(path, tone(440, 0.5, 8000), 8000)
        x, rate = read_audio(path)
        assert (rate, len(x), audio_info(path).frames) == (8000, 4000, 4000)
