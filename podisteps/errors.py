"""The base of every error podiflow raises on purpose, and its logger.

Each error class also derives from the built-in it refines (``ValueError``, ``LookupError``, ...), so callers
may catch either. Messages name the file and what is wrong with it; commands print them as one line.
"""

import logging

__all__ = ["PodiflowError", "RawFormatError", "CalibrationError", "logger"]

#: The ``podiflow`` logger: library code reports fallbacks and skipped inputs here, never with ``print``.
logger = logging.getLogger("podiflow")


class PodiflowError(Exception):
    """Base of podiflow's own errors (bad raw data, unusable calibrations, wrong options)."""


class RawFormatError(PodiflowError, ValueError):
    """A raw file or exposure folder that is not valid ODI raw data; the message names the file."""


class CalibrationError(PodiflowError, ValueError):
    """A calibration file that does not fit the frame being reduced; the message names the file."""
