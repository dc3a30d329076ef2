"""Detrending one OTA: raw cells to a calibrated SCI and MASK, as one function.

- :func:`detrend_ota` (``composite``): the whole per-OTA sequence on a raw OTA and opened calibrations.
- :data:`STEPS`, :data:`LAST_STAGE` (``steps``): the step order, and how far each frame kind goes.
- The steps, one module each, in the order they run: ``crosstalk``, ``overscan``, ``nonlinearity``,
  ``assemble`` (cells to the OTA frame; the bits it sets are :data:`podisteps.maskbits.MASK_BITS`),
  ``calibrate`` (bias, dark, flat, illumination, gain), ``masks`` (bad pixels, saturation, bleed),
  ``persistency``, ``cosmics``, ``wcs`` (the canned distortion WCS), ``background`` (sky boxes); the
  photometric flat is :mod:`podisteps.photometry.photflat`.
- ``reductionlog``: :class:`ReductionLog <podisteps.detrend.reductionlog.ReductionLog>`, the ``_BIAS``-style
  cards, the ``CC-`` HISTORY lines and the files read, by role.
"""

from .composite import (BadPixelRegions, Calibration, DetrendInputs, DetrendResult, DetrendSettings, FrameMismatchError,
                        PersistencySource, detrend_ota)
from .steps import LAST_STAGE, MASTER_STEPS, SIGNAL_CHAIN, STEPS, prerequisites, steps_after

__all__ = ["detrend_ota", "DetrendSettings", "DetrendInputs", "DetrendResult", "Calibration", "BadPixelRegions",
           "PersistencySource", "FrameMismatchError", "STEPS", "SIGNAL_CHAIN", "MASTER_STEPS", "LAST_STAGE",
           "steps_after", "prerequisites"]
