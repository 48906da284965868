"""The ``pipeline`` console script: parses arguments, loads settings, calls one stage function.

No stage logic lives here; every stage is a plain function in ``preprocessing/`` or ``models/`` that
tests and notebooks call directly. Exit status: 0 success, 1 some inputs failed (the rest were
processed), 2 nothing could be done (bad settings, bad folders).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from audio_superres.models.packaged import SHIPPED
from audio_superres.settings import LOWRES_METHODS, Settings, SettingsError, load_settings


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("audio-superres-pipeline")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


class StageError(Exception):
    """A stage cannot start or go on; the message is one line for the user."""


def _positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0 (nan, inf and 0 would crash later)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < 1e6):
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds above 0 and below 1e6")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--settings", default=None, metavar="DIR", help="folder of data/model/training/upsampling.json (default ./settings when it exists; missing files mean defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FILE.KEY=VALUE", help="override one setting, e.g. --set data.factor=2 (repeatable)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summaries")


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.preprocessing.synth import generate_talks

    paths = generate_talks(args.out_dir, args.talks, args.seconds, settings.data.sample_rate, args.seed)
    if not args.quiet:
        print(f"generate: {len(paths)} talks of {args.seconds:g} s at {settings.data.sample_rate} Hz -> {args.out_dir}")
    return 0


def cmd_splice(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.preprocessing.splice import SpliceError, splice

    try:
        summary = splice(settings.data, quiet=args.quiet)
    except SpliceError as e:
        raise StageError(str(e)) from None
    if summary.failed:
        print(f"error: {summary.failed} file(s) could not be read; listed in {Path(settings.data.output_dir) / 'failures.csv'}", file=sys.stderr)
        return 1
    return 0


def cmd_split(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.preprocessing.split import split
    from audio_superres.preprocessing.tables import TableError

    d = settings.data
    try:
        split(d.output_dir, d.splits, d.split_by, d.seed, quiet=args.quiet)
    except (FileNotFoundError, TableError) as e:
        raise StageError(str(e)) from None
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(Path(args.workdir), settings, quiet=args.quiet)


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.models.checkpoint import CheckpointError
    from audio_superres.pipeline.training.data import DataError
    from audio_superres.pipeline.training.train import TrainingDiverged, TrainingError, train

    try:
        train(settings, resume=args.resume, quiet=args.quiet)
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (TrainingError, DataError, CheckpointError) as e:
        raise StageError(str(e)) from None
    except KeyboardInterrupt:
        from audio_superres.pipeline.training.train import interrupted_line

        print(interrupted_line(Path(settings.training.run_dir)), file=sys.stderr)
        return 130
    return 0


def _upsampler(args: argparse.Namespace, settings: Settings):
    """The checkpoint's network, ready to run: shared by ``upsample`` and ``evaluate``."""
    from audio_superres.pipeline.inference import UpsampleError, find_checkpoint, load_upsampler

    try:
        checkpoint = find_checkpoint(getattr(args, "model", None) or args.checkpoint, settings.upsampling)
        up, info = load_upsampler(checkpoint, settings.upsampling, args.device)
    except UpsampleError as e:
        raise StageError(str(e)) from None
    return up, info, checkpoint


def cmd_upsample(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.pipeline.inference import UpsampleError, upsample_paths
    from audio_superres.pipeline.inference.memory import reuse_freed_memory

    reuse_freed_memory()  # this process is ours: freed tensors stay for the next window (about 5%)
    forced, checkpoint = None, None
    if args.model is not None or args.checkpoint is not None or settings.upsampling.checkpoint is not None:
        forced, _, checkpoint = _upsampler(args, settings)  # one network for every file (Dask workers load it from its path)
        if args.rate is not None and args.rate != forced.high_rate:
            raise StageError(f"--rate {args.rate}: the model given outputs {forced.high_rate} Hz")
    try:
        summary = upsample_paths(args.inputs, args.output, settings.upsampling, forced, rate=args.rate or 16000, overwrite=args.overwrite, device=args.device, quiet=args.quiet, checkpoint=checkpoint)
    except UpsampleError as e:  # nothing to do, or nowhere to write: exit 2
        raise StageError(str(e)) from None
    return 1 if summary.failed else 0


def cmd_inspect(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.pipeline.inference.inspect import inspect_paths, write_csv

    table = inspect_paths(args.inputs, quiet=args.quiet)
    if table.empty:
        raise StageError(f"{', '.join(map(str, args.inputs))}: no audio files")
    for row in table.itertuples():
        if row.error:
            print(f"error: {row.error}", file=sys.stderr)
        else:
            band = "full band" if row.full_band else f"content to {row.cutoff_hz / 1000:.2f} kHz"
            print(f"{row.file}: {int(row.sample_rate)} Hz, {int(row.channels)} ch, {row.seconds:.1f} s, {band} -> {row.model}")
    ok = table[table["error"] == ""]
    if not args.quiet:
        print(f"inspect: {len(ok)} file(s), {int((ok['full_band'] == False).sum())} narrower than their rate, {len(table) - len(ok)} unreadable")  # noqa: E712
    if args.csv is not None:
        try:
            write_csv(table, args.csv)
        except OSError as e:
            raise StageError(f"{args.csv}: cannot write ({e.strerror or e})") from None
    return 1 if (table["error"] != "").any() else 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.pipeline.evaluation.evaluate import EvaluateError, evaluate
    from audio_superres.pipeline.evaluation.plan import plan_evaluation

    up, info, checkpoint = _upsampler(args, settings)
    try:
        plan = plan_evaluation(settings.data, info["data"]["lowres"], input_dir=args.input, lowres=args.lowres)
        if plan.note and not args.quiet:
            print(f"note: {plan.note}", file=sys.stderr)
        output = args.output or Path(settings.training.run_dir) / "eval"
        scoring = {"figures": args.figures, "perceptual": args.perceptual, "perceptual_seconds": args.perceptual_seconds, "quiet": args.quiet}
        about = {"checkpoint": str(checkpoint), "source": plan.source}
        result = evaluate(up, plan.lowres, plan.paths, output, names=plan.names, settings=settings.upsampling, trim_seconds=plan.trim_seconds, about=about, **scoring)
    except EvaluateError as e:
        raise StageError(str(e)) from None
    return 1 if result.errors else 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    from audio_superres.pipeline.evaluation.report import ReportError, build_report

    eval_dir = args.eval or Path(settings.training.run_dir) / "eval"
    try:
        build_report(eval_dir, args.output or Path(settings.training.run_dir) / "report", quiet=args.quiet)
    except ReportError as e:
        raise StageError(str(e)) from None
    return 0


UPSAMPLE_OUTPUT_HELP = "one input file: the output file or a folder (default <stem>_16k.wav beside it); otherwise a folder mirroring the inputs (default <folder>_16k/)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline", description="Audio super-resolution: learn the missing high band of low-rate speech and restore it.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="write synthetic speech-like talks (for trying the pipeline)")
    _common(p)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--talks", type=int, choices=range(1, 10001), metavar="N", default=10, help="how many talks (default 10)")
    p.add_argument("--seconds", type=_positive_seconds, default=60.0, help="length of each talk (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("splice", help="cut talks into high-res / low-res clip pairs (data.input_dir -> data.output_dir)")
    _common(p)
    p.set_defaults(func=cmd_splice)

    p = sub.add_parser("split", help="divide the manifest into train/val/test by talk")
    _common(p)
    p.set_defaults(func=cmd_split)

    from .demo import HELP as demo_help

    p = sub.add_parser("demo", help=demo_help, description=demo_help)
    _common(p)
    p.add_argument("--workdir", default="data/demo", help="where the demo writes everything (default data/demo)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="fit a model to the train split (writes best.pt, last.pt, history.csv to training.run_dir); under torchrun, on several GPUs")
    _common(p)
    p.add_argument("--resume", action="store_true", help="continue the run in training.run_dir from its last.pt (same step, optimiser, schedule, RNG and data order)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("upsample", help="restore the high band of whole recordings with a trained model (files or folders)")
    _common(p)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files or folders (searched recursively), at any rate")
    p.add_argument("-o", "--output", type=Path, metavar="OUT", help=UPSAMPLE_OUTPUT_HELP)
    p.add_argument("--model", choices=[m.name for m in SHIPPED], help="use this shipped model for every file (default: chosen per file by its measured band)")
    p.add_argument("--checkpoint", type=Path, metavar="CKPT", help="use this checkpoint for every file (default upsampling.checkpoint, else the choice per file)")
    p.add_argument("--rate", type=int, metavar="HZ", help="output rate (default 16000: the shipped models' output)")
    p.add_argument("--overwrite", action="store_true", help="redo outputs that already exist (default: skip them, so a rerun finishes only what is missing)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default upsampling.device")
    p.set_defaults(func=cmd_upsample)

    p = sub.add_parser("inspect", help="rate, channels, duration and measured bandwidth of recordings, and the model upsample would choose")
    _common(p)
    p.add_argument("inputs", nargs="+", type=Path, metavar="IN", help="audio files or folders (searched recursively)")
    p.add_argument("--csv", type=Path, metavar="PATH", help="also write the table as CSV")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("evaluate", help="score a model beside the sinc and cubic baselines on the test split or a folder")
    _common(p)
    p.add_argument("--checkpoint", type=Path, metavar="CKPT", help="model checkpoint (default upsampling.checkpoint)")
    p.add_argument("--input", type=Path, metavar="DIR", help="a folder of high-res files instead of the test split's source recordings")
    p.add_argument("-o", "--output", type=Path, metavar="OUTDIR", help="where scores, summary and samples go (default <training.run_dir>/eval)")
    p.add_argument("--figures", type=int, default=3, metavar="N", help="files to keep audio excerpts and spectrograms of (default 3)")
    p.add_argument("--lowres", choices=LOWRES_METHODS, help="how the low-res input is made (default: the first method the checkpoint was trained on)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default upsampling.device")
    from audio_superres.pipeline.evaluation.perceptual import EVALUATE_SECONDS as PERCEPTUAL_SECONDS  # numpy only: cheap

    p.add_argument("--no-perceptual", dest="perceptual", action="store_false", help="skip ViSQOL and wide-band PESQ (faster; SNR, LSD and LSD-HF only)")
    p.add_argument(
        "--perceptual-seconds",
        type=float,
        default=PERCEPTUAL_SECONDS,
        metavar="S",
        help=f"score ViSQOL and PESQ on the middle S seconds of each file (default {PERCEPTUAL_SECONDS:g} s, as ViSQOL takes seconds per minute of audio; 0: whole files)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("report", help="a static HTML page of an evaluation: summary table, audio players, spectrograms")
    _common(p)
    p.add_argument("--eval", type=Path, metavar="DIR", help="what `pipeline evaluate` wrote (default <training.run_dir>/eval)")
    p.add_argument("-o", "--output", type=Path, metavar="DIR", help="the report folder (default <training.run_dir>/report)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    # a file name that is not valid UTF-8 is printed with escapes instead of ending the run
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.settings, args.overrides)
        return args.func(args, settings)
    except (SettingsError, StageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a blocked path that a stage did not foresee: one line, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
