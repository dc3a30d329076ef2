"""Detrending one OTA: raw cells to a calibrated SCI and MASK, as one function.

- :func:`detrend_ota` (``composite``): the whole per-OTA sequence on a raw OTA and opened calibrations.
- :data:`STEPS`, :data:`LAST_STAGE` (``steps``): the step order, and how far each frame kind goes.
- The steps themselves live in their own modules: ``overscan``, ``crosstalk``, ``nonlinearity``,
  ``assemble``, ``calibrate``, ``masks``, ``persistency``, ``cosmics``, ``photflat``, ``wcs``, ``background``.
"""

from .composite import (BadPixelRegions, Calibration, DetrendInputs, DetrendResult, DetrendSettings,
                        FrameMismatchError, PersistencySource, detrend_ota)
from .steps import LAST_STAGE, MASTER_STEPS, SIGNAL_CHAIN, STEPS, prerequisites, steps_after

__all__ = ["detrend_ota", "DetrendSettings", "DetrendInputs", "DetrendResult", "Calibration", "BadPixelRegions",
           "PersistencySource", "FrameMismatchError", "STEPS", "SIGNAL_CHAIN", "MASTER_STEPS", "LAST_STAGE",
           "steps_after", "prerequisites"]
