"""``pipeline demo``: the whole workflow end to end on generated talks, with nothing to download.

Under ``workdir`` (default ``data/demo``) it writes, each step through the same functions as the
stage commands:

1. ``talks/``: 10 synthetic talks of 40 s, one speaker each (``preprocessing.synth``);
2. ``clips/``: spliced clip pairs (2 s trimmed at each end: generated talks have no intro),
   ``manifest.csv`` and ``splits/`` (6/2/2 talks);
3. ``run/``: a small ``bwe`` model trained for at most ``DEMO_TRAIN_MINUTES`` on the CPU
   (``best.pt``, ``last.pt``, ``history.csv``, ``curves.png``);
4. ``eval/``: the test talks scored beside sinc and cubic (``summary.md``, ``scores.csv``, figures);
5. ``upsampled/``: one test talk upsampled from its 4 kHz version, as ``pipeline upsample`` does;
6. ``report/index.html``: the page with the table, players and spectrograms.

It ends with the table and says whether the model beats cubic on LSD (exit status 1 if not).
Running it again resumes: finished steps are not redone (delete ``workdir`` to start over).
"""

from __future__ import annotations

from pathlib import Path

from audio_superres.preprocessing.audio import read_audio, to_pcm16, write_audio
from audio_superres.preprocessing.lowres import make_lowres
from audio_superres.preprocessing.splice import splice
from audio_superres.preprocessing.split import split
from audio_superres.preprocessing.synth import generate_talks

from audio_superres.settings import Settings

DEMO_TALKS = 10
DEMO_SECONDS = 40.0
DEMO_TRAIN_MINUTES = 2.5
# small enough to train in minutes on 2 CPU cores, big enough to learn the generated voices' high band
DEMO_MODEL = {"name": "bwe", "hidden": 64, "blocks": 2}
DEMO_TRAINING = {"batch_size": 8, "learning_rate": 2e-3, "warmup_steps": 20, "num_workers": 0, "epochs": 200}


def run_demo(workdir: Path, settings: Settings, quiet: bool = False, train_minutes: float = DEMO_TRAIN_MINUTES) -> int:
    from audio_superres.pipeline.evaluation.evaluate import evaluate, markdown_table, split_test_sources
    from audio_superres.pipeline.inference import ChunkPlan, load_upsampler, output_suffix, upsample_array
    from audio_superres.pipeline.training.train import train

    from audio_superres.pipeline.evaluation.report import build_report

    say = (lambda *a: None) if quiet else print
    talks_dir, clips_dir, run_dir = workdir / "talks", workdir / "clips", workdir / "run"
    if not (talks_dir.is_dir() and len(list(talks_dir.glob("talk_*.flac"))) == DEMO_TALKS):
        say(f"demo: generating {DEMO_TALKS} talks of {DEMO_SECONDS:g} s in {talks_dir}")
        generate_talks(talks_dir, DEMO_TALKS, DEMO_SECONDS, settings.data.sample_rate, seed=settings.data.seed)
    data = settings.data.model_copy(update={"input_dir": talks_dir, "output_dir": clips_dir, "trim_seconds": 2.0})
    summary = splice(data, quiet=quiet)
    split(clips_dir, data.splits, data.split_by, data.seed, quiet=quiet)

    demo = Settings(
        data=data,
        model=settings.model.model_copy(update=DEMO_MODEL),
        training=settings.training.model_copy(update={**DEMO_TRAINING, "run_dir": run_dir, "max_minutes": train_minutes, "device": "cpu"}),
        upsampling=settings.upsampling.model_copy(update={"device": "cpu"}),
    )
    if not (run_dir / "done").is_file():
        say(f"demo: training a small {DEMO_MODEL['name']} model for at most {train_minutes:g} min on the CPU")
        train(demo, resume=(run_dir / "last.pt").is_file(), quiet=quiet)
        (run_dir / "done").touch()

    up, _ = load_upsampler(run_dir / "best.pt", demo.upsampling, "cpu")
    paths = split_test_sources(data)
    result = evaluate(
        up, data.lowres, paths, workdir / "eval", names=[p.name for p in paths], settings=demo.upsampling,
        trim_seconds=data.trim_seconds, figures=2, about={"checkpoint": str(run_dir / "best.pt"), "source": "generated test talks"}, quiet=True,
    )

    # one whole test talk, made narrow-band as a user's recording would be, then restored
    talk, rate = read_audio(paths[0], data.sample_rate)
    narrow = to_pcm16(make_lowres(talk[: len(talk) // data.factor * data.factor], data.factor, data.lowres, rate))
    narrow_path = workdir / "upsampled" / f"{paths[0].stem}_4khz.wav"
    write_audio(narrow_path, narrow, data.low_rate)
    restored_path = workdir / "upsampled" / f"{paths[0].stem}_4khz{output_suffix(data.sample_rate)}.wav"
    write_audio(restored_path, upsample_array(narrow, up, ChunkPlan.from_settings(demo.upsampling, up.low_rate)), up.high_rate)
    page = build_report(workdir / "eval", workdir / "report", quiet=True)

    means = result.summary
    model_lsd, cubic_lsd = float(means.loc["model", "lsd"]), float(means.loc["cubic", "lsd"])
    beats = model_lsd < cubic_lsd
    if not quiet:
        print(markdown_table(means))
        print(
            f"demo: the model {'beats' if beats else 'does NOT beat'} cubic on LSD ({model_lsd:.3f} vs {cubic_lsd:.3f}) on "
            f"{len(paths)} generated test talks\n"
            f"  clips and splits  {clips_dir}\n  checkpoint        {run_dir / 'best.pt'}\n  scores            {workdir / 'eval' / 'scores.csv'}\n"
            f"  upsampled talk    {restored_path} (from {narrow_path.name})\n  report            {page}"
        )
    return 0 if beats and not summary.failed else 1

