"""Applying a model to whole recordings, by concern: :mod:`.adapter` (a checkpoint's network and its
rates), :mod:`.chunking` (windows, cross-fades, the streaming loop), :mod:`.files` (one recording in,
its upsampled twin out), :mod:`.folders` (inputs to outputs), :mod:`.upsample` (the command: a model
per file by its measured band) and :mod:`.inspect` (what each file holds)."""

from .adapter import UpsampleError, Upsampler, find_checkpoint, load_upsampler
from .chunking import ALIGN, ChunkPlan, upsample_array, upsample_stream
from .files import FileResult, copy_file, read_lowrate_blocks, upsample_file
from .folders import output_suffix, plan_outputs
from .upsample import UpsampleSummary, upsample_paths

__all__ = [
    "ALIGN",
    "ChunkPlan",
    "FileResult",
    "copy_file",
    "output_suffix",
    "UpsampleError",
    "UpsampleSummary",
    "Upsampler",
    "find_checkpoint",
    "load_upsampler",
    "plan_outputs",
    "read_lowrate_blocks",
    "upsample_array",
    "upsample_file",
    "upsample_paths",
    "upsample_stream",
]
