"""The one error type of training: bad input found before any training starts (or a failed run)."""

from __future__ import annotations


class TrainError(ValueError):
    """Training input or configuration is unusable; the message names the thing and the fix."""
