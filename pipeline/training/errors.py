"""The errors of ``pipeline train``, each a one-line message."""

from __future__ import annotations


class TrainingError(Exception):
    """Training cannot start or go on; the message is one line."""


class TrainingDiverged(TrainingError):
    """The loss became NaN or infinite; the last good checkpoint was kept."""
