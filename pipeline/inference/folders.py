"""The folder plan of ``pipeline upsample``: which inputs go to which outputs, and running them all."""

from __future__ import annotations

import os
from pathlib import Path

from audio_superres.preprocessing.audio import AUDIO_EXTENSIONS, audio_files_in, fit_name, remove_stale_temporaries

from .adapter import UpsampleError


def prepare_output_folders(pairs: list[tuple[Path, Path]]) -> None:
    """Before any file is read: refuse with :class:`UpsampleError` when an output folder cannot be
    made or written (rather than failing every file in turn), and delete the temporaries that a
    killed run left for these outputs."""
    folders: dict[Path, set[str]] = {}
    for _, dst in pairs:
        folders.setdefault(dst.parent, set()).add(dst.name)
    for folder, names in sorted(folders.items()):
        existing = folder
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise UpsampleError(f"{folder}: output folder cannot be created: {existing} is a file")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UpsampleError(f"{folder}: output folder cannot be written ({existing} is read-only or not ours)")
        if existing == folder:
            remove_stale_temporaries(folder, names)


def output_suffix(rate: int) -> str:
    """``_16k`` for 16000 Hz, ``_22.05k`` for 22050: what an output beside its input is named for."""
    return f"_{rate / 1000:g}k"


def _not_our_outputs(files: list[Path], suffix: str) -> list[Path]:
    """``files`` less the outputs of an earlier ``pipeline upsample FILE`` beside their inputs
    (``talk_16k.wav`` next to ``talk.flac``): an output is never taken as an input."""
    stems = {(f.parent, f.stem) for f in files}
    return [f for f in files if not (f.suffix == ".wav" and f.stem.endswith(suffix) and (f.parent, f.stem[: -len(suffix)]) in stems)]


def plan_outputs(inputs: list[str | Path], output: str | Path | None, rate: int) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(source, destination) pairs for ``pipeline upsample IN [IN ...] [-o OUT]``, and one-line errors
    for inputs that give nothing to do.

    One file: ``OUT`` is the output file, or a folder to put ``<stem>.wav`` in (default
    ``<stem>_16k.wav`` beside the input, named for the output rate). Otherwise ``OUT`` is a folder:
    one folder input is mirrored into it (same sub-folders and stems, ``.wav``); with several inputs
    each folder goes to ``OUT/<folder name>/`` and each file to ``OUT/``. Without ``OUT``, files get
    ``<stem>_16k.wav`` beside them and folders ``<folder>_16k/`` beside them, so that outputs never
    sit among the inputs of a later run. No output may be an input (any of them) or another's output.
    """
    paths = [Path(p) for p in inputs]
    out = Path(output) if output is not None else None
    errors: list[str] = []
    pairs: list[tuple[Path, Path]] = []
    suffix = output_suffix(rate)
    if len(paths) == 1 and not paths[0].is_dir():
        src = paths[0]
        if not src.exists():
            return [], [f"{src}: no such file or folder"]
        dst = out if out is not None else src.with_name(fit_name(f"{src.stem}{suffix}", ".wav"))
        if out is not None and out.is_dir():
            dst = out / f"{src.stem}.wav"
        elif dst.suffix.lower() != ".wav":
            return [], [f"{dst}: the output is a WAV file; name it .wav"]
        pairs = [(src, dst)]
    else:
        for src in paths:
            if src.is_dir():
                root = out if out is not None and len(paths) == 1 else (out / src.resolve().name if out is not None else src.parent / f"{src.resolve().name}{suffix}")
                if root.resolve() == src.resolve():
                    errors.append(f"{src}: the output folder is this input folder itself; choose another -o (outputs would replace or mix with the inputs)")
                    continue
                problems: list[tuple[str, str]] = []
                files = _not_our_outputs(audio_files_in(src, [root], problems), suffix)
                errors += [f"{path}: {why}" for path, why in problems]
                if not files and not problems:
                    errors.append(f"{src}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
                pairs += [(f, (root / f.relative_to(src)).with_suffix(".wav")) for f in files]
            elif src.exists():
                pairs.append((src, out / f"{src.stem}.wav" if out is not None else src.with_name(fit_name(f"{src.stem}{suffix}", ".wav"))))
            else:
                errors.append(f"{src}: no such file or folder")
    sources = {src.resolve(): src for src, _ in pairs}
    seen: dict[Path, Path] = {}
    kept = []
    for src, dst in pairs:
        key = dst.resolve()
        if key in sources:
            errors.append(f"{src}: its output {dst} would overwrite the input {sources[key]}; choose another -o")
        elif key in seen:
            errors.append(f"{src}: its output {dst} would overwrite the output of {seen[key]}; rename one of them")
        else:
            seen[key] = src
            kept.append((src, dst))
    return kept, errors
