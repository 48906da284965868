"""``pipeline demo``: the whole workflow end to end on generated talks, with nothing to download.

Under ``workdir`` (default ``data/demo``) it runs seven steps, each through the same functions as
the stage commands:

1. generate ``talks/``: 10 synthetic talks of 40 s, one speaker each (``preprocessing.synth``);
2. splice them into ``clips/``: clip pairs (2 s trimmed at each end: generated talks have no intro)
   and ``manifest.csv``;
3. split: ``clips/splits/`` (6/2/2 talks);
4. train ``run/``: a small ``bwe`` model, for at most ``DEMO_TRAIN_MINUTES`` on the CPU
   (``best.pt``, ``last.pt``, ``history.csv``, ``curves.png``);
5. evaluate into ``eval/``: the test talks scored beside sinc and cubic, as ``pipeline evaluate``
   does (the same :func:`plan_evaluation`), with ViSQOL and PESQ-WB on the middle
   ``DEMO_PERCEPTUAL_SECONDS`` of each talk when the ``metrics`` extra is installed;
6. upsample into ``upsampled/``: one test talk from its 4 kHz version, as ``pipeline upsample`` does;
7. report: ``report/index.html``, the page with the table, players and spectrograms.

It ends with the table and one line giving SNR and LSD of the model, sinc and cubic, and whether
the model beats cubic on each (exit status 1 if it does not beat cubic on LSD).
Running it again resumes: finished steps are not redone (delete ``workdir`` to start over).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from audio_superres.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

# `pipeline demo --help`: every step, in order
HELP = "end to end on generated talks: generate, splice, split, train a small model on the CPU, evaluate beside sinc and cubic, upsample a talk, write the report"

DEMO_TALKS = 10
DEMO_SECONDS = 40.0
DEMO_TRAIN_MINUTES = 2.5
# small enough to train in minutes on 2 CPU cores, big enough to learn the generated voices' high band
DEMO_MODEL = {"name": "bwe", "hidden": 64, "blocks": 2}
DEMO_TRAINING = {"batch_size": 8, "learning_rate": 2e-3, "warmup_steps": 20, "num_workers": 0, "epochs": 200}
DEMO_PERCEPTUAL_SECONDS = 10.0  # ViSQOL on whole 36 s talks would add a minute on a busy 2-core machine


def closing_line(summary: pd.DataFrame, files: int) -> str:
    """The demo's verdict: whether the model beats cubic on LSD and on SNR, with both figures of the
    model and of both baselines (``summary``: :func:`evaluate.summarize`)."""
    m, c = summary.loc["model"], summary.loc["cubic"]
    on_lsd, on_snr = m["lsd"] < c["lsd"], m["snr"] > c["snr"]
    verdict = f"{'beats' if on_lsd else 'does NOT beat'} cubic on LSD, {'and' if on_lsd == on_snr else 'but'} {'' if on_snr else 'not '}on SNR"
    figures = "; ".join(f"{s} SNR {summary.loc[s, 'snr']:.2f} dB, LSD {summary.loc[s, 'lsd']:.3f}" for s in ("model", "sinc", "cubic"))
    return f"demo: the model {verdict}, on {files} generated test talks ({figures})"


def run_demo(workdir: Path, settings: Settings, quiet: bool = False, train_minutes: float = DEMO_TRAIN_MINUTES) -> int:
    # imported here, not at the top: every command's parser reads HELP, and these (scipy.signal,
    # pandas) took 1.2 s of each `pipeline upsample` start-up
    from audio_superres.pipeline.evaluation.evaluate import evaluate, perceptual_plan
    from audio_superres.pipeline.evaluation.plan import plan_evaluation
    from audio_superres.pipeline.evaluation.report import build_report
    from audio_superres.pipeline.inference import ChunkPlan, load_upsampler, output_suffix, upsample_array
    from audio_superres.pipeline.training.train import train
    from audio_superres.preprocessing.audio import read_audio, to_pcm16, write_audio
    from audio_superres.preprocessing.lowres import make_lowres
    from audio_superres.preprocessing.splice import splice
    from audio_superres.preprocessing.split import split
    from audio_superres.preprocessing.synth import generate_talks

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

    up, info = load_upsampler(run_dir / "best.pt", demo.upsampling, "cpu")
    plan = plan_evaluation(data, info["data"]["lowres"])  # what `pipeline evaluate` runs on the test split
    _, note = perceptual_plan(True, up.high_rate)
    if note:
        say(f"note: {note}")
    say(f"demo: evaluating on {len(plan.paths)} test talks")
    result = evaluate(
        up,
        plan.lowres,
        plan.paths,
        workdir / "eval",
        names=plan.names,
        settings=demo.upsampling,
        trim_seconds=plan.trim_seconds,
        figures=2,
        perceptual_seconds=DEMO_PERCEPTUAL_SECONDS,
        about={"checkpoint": str(run_dir / "best.pt"), "source": f"generated test talks: {plan.source}"},
        quiet=True,
    )

    # one whole test talk, made narrow-band as a user's recording would be, then restored
    first = plan.paths[0]
    talk, rate = read_audio(first, data.sample_rate)
    narrow = to_pcm16(make_lowres(talk[: len(talk) // data.factor * data.factor], data.factor, plan.lowres, rate))
    narrow_path = workdir / "upsampled" / f"{first.stem}_4khz.wav"
    write_audio(narrow_path, narrow, data.low_rate)
    restored_path = workdir / "upsampled" / f"{first.stem}_4khz{output_suffix(data.sample_rate)}.wav"
    write_audio(restored_path, upsample_array(narrow, up, ChunkPlan.from_settings(demo.upsampling, up.low_rate)), up.high_rate)
    page = build_report(workdir / "eval", workdir / "report", quiet=True)

    means = result.summary
    beats = means.loc["model", "lsd"] < means.loc["cubic", "lsd"]
    if not quiet:
        print(result.table)
        print(
            f"  clips and splits  {clips_dir}\n  checkpoint        {run_dir / 'best.pt'}\n  scores            {workdir / 'eval' / 'scores.csv'}\n"
            f"  upsampled talk    {restored_path} (from {narrow_path.name})\n  report            {page}"
        )
        print(closing_line(means, int(means.loc["model", "files"])))
    return 0 if beats and not summary.failed else 1
