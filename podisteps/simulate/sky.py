"""Smooth backgrounds: the night-sky level with a gentle gradient, and the dome-flat illumination.

Both are functions of focal-plane coordinates ``(fx, fy)``: arcmin East and North of the optical axis
along the detector axes, ``f = (pixel + 1 - CRPIX) * scale * 0.1125" / 60`` with the model CRPIX of the
OTA (the rotator offset and the distortion are ignored: the models are smooth).

- Sky (ADU per pixel at the nominal gain): ``level * (1 + gx fx + gy fy)``, ``level`` from the sky
  surface brightness and the zero point at airmass 1 (``10^(-0.4 (mu - zp0)) * EXPTIME * pixel area``),
  ``gx, gy`` drawn per exposure (sigma 4e-4 per arcmin, i.e. about 2 % across a 5x6 field).
- Dome flat: ``level * (1 - q (r / 30')^2 + tx fx + ty fy)``, ``q`` = 0.04, ``tx, ty`` drawn per night
  (sigma 2e-4 per arcmin).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .distortion import PIXEL_SCALE_DEG

__all__ = ["SkyModel", "IlluminationModel", "focal_plane_axes", "sky_rate"]

_ARCMIN_PER_PX = PIXEL_SCALE_DEG * 60.0


def focal_plane_axes(crpix: tuple[float, float], x: np.ndarray, y: np.ndarray, scale: int):
    """Focal-plane coordinates of pixel columns ``x`` and rows ``y`` (0-based) of an OTA, arcmin.

    Returns
    -------
    fx, fy : numpy.ndarray
        Shapes of ``x`` and ``y``.
    """
    fx = (np.asarray(x, dtype=np.float64) + 1.0 - crpix[0] / scale) * scale * _ARCMIN_PER_PX
    fy = (np.asarray(y, dtype=np.float64) + 1.0 - crpix[1] / scale) * scale * _ARCMIN_PER_PX
    return fx, fy


def sky_rate(sky_mag: float, zp0: float, scale: int) -> float:
    """Sky count rate, ADU/s per pixel of ``scale`` full-size pixels, at the nominal gain."""
    area = (PIXEL_SCALE_DEG * 3600.0 * scale) ** 2
    return 10.0 ** (-0.4 * (sky_mag - zp0)) * area


@dataclass(frozen=True)
class SkyModel:
    """Sky background ``level * (1 + gx fx + gy fy)``, ADU per pixel (nominal gain)."""

    level: float
    gx: float
    gy: float

    def evaluate(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Sky on the grid ``fx[None, :]``, ``fy[:, None]`` (arcmin), shape ``(len(fy), len(fx))``, float32."""
        row = (self.gx * fx).astype(np.float32)
        col = (1.0 + self.gy * fy).astype(np.float32)
        return np.float32(self.level) * (col[:, None] + row[None, :])

    def as_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"model": "level * (1 + gx*fx + gy*fy)", **asdict(self)}


@dataclass(frozen=True)
class IlluminationModel:
    """Dome-flat illumination ``level * (1 - q (r/30')^2 + tx fx + ty fy)``, ADU per pixel (nominal gain)."""

    level: float
    q: float
    tx: float
    ty: float

    def evaluate(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Illumination on the grid ``fx[None, :]``, ``fy[:, None]`` (arcmin), float32."""
        row = (-self.q * (fx / 30.0) ** 2 + self.tx * fx).astype(np.float32)
        col = (1.0 - self.q * (fy / 30.0) ** 2 + self.ty * fy).astype(np.float32)
        return np.float32(self.level) * (col[:, None] + row[None, :])

    def as_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"model": "level * (1 - q*(r/30)**2 + tx*fx + ty*fy), r = hypot(fx, fy)", **asdict(self)}

