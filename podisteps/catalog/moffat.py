"""The Moffat PSF: enclosed energy and pixel-integrated postage stamps.

The PSF model of the whole package: detection converts half-light radii to FWHM with it and the simulator
renders stars with it, so it lives with the catalogue code and the simulator imports it from here.

``I(r) = (beta - 1) / (pi alpha^2) (1 + r^2/alpha^2)^-beta`` integrates to 1 over the plane;
``alpha = FWHM / (2 sqrt(2^(1/beta) - 1))``; ``EE(R) = 1 - (1 + R^2/alpha^2)^(1 - beta)``.

Stamps are integrated over each pixel by averaging ``s x s`` sub-samples, ``s = ceil(5 / FWHM_px)``
clipped to 1..7 (point sampling of a well-sampled PSF already integrates to better than 1e-4). A stamp
reaches the radius where the profile falls below ``floor`` ADU per pixel, at least 8 alpha (99.98 % of the
flux) and at most 40 alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Moffat", "MOFFAT_BETA"]

#: Moffat exponent.
MOFFAT_BETA = 3.0


@dataclass(frozen=True)
class Moffat:
    """A circular Moffat PSF in pixel units.

    Attributes
    ----------
    fwhm : float
        Full width at half maximum, pixels.
    beta : float
        Moffat exponent.
    """

    fwhm: float
    beta: float = MOFFAT_BETA

    @property
    def alpha(self) -> float:
        """Core radius alpha, pixels."""
        return self.fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / self.beta) - 1.0))

    @property
    def subsample(self) -> int:
        """Sub-samples per pixel and axis used by ``render``."""
        return int(min(7, max(1, math.ceil(5.0 / self.fwhm))))

    def enclosed_energy(self, radius):
        """Fraction of the flux within ``radius`` pixels (scalar or array)."""
        return 1.0 - (1.0 + (np.asarray(radius, dtype=float) / self.alpha) ** 2) ** (1.0 - self.beta)

    def profile(self, r2: np.ndarray) -> np.ndarray:
        """Surface brightness per unit flux at squared radius ``r2`` (pixels^2), per pixel^2."""
        norm = (self.beta - 1.0) / (math.pi * self.alpha**2)
        u = 1.0 / (1.0 + r2 / self.alpha**2)
        return norm * (u * u * u if self.beta == 3.0 else u**self.beta)

    def stamp_radius(self, flux: float, *, floor: float = 0.01) -> int:
        """Half-size of the stamp of a star of ``flux`` ADU, pixels."""
        peak = flux * (self.beta - 1.0) / (math.pi * self.alpha**2)
        x2 = (peak / floor) ** (1.0 / self.beta) - 1.0 if peak > floor else 0.0
        r = self.alpha * math.sqrt(max(x2, 0.0))
        return int(math.ceil(min(max(r, 8.0 * self.alpha), 40.0 * self.alpha)))

    def render(self, frame: np.ndarray, x: float, y: float, flux: float, *, floor: float = 0.01) -> float:
        """Add a star to ``frame`` in place.

        Parameters
        ----------
        frame : numpy.ndarray
            Image, shape ``(ny, nx)``, float32 or float64, numpy ``[y, x]``.
        x, y : float
            Star centre, 0-based pixel coordinates (pixel centres at integers).
        flux : float
            Total flux (the part falling outside ``frame`` is lost).
        floor : float, optional
            Surface brightness where the stamp may end, same unit as ``flux`` per pixel.

        Returns
        -------
        float
            The flux added to ``frame``.
        """
        ny, nx = frame.shape
        r = self.stamp_radius(flux, floor=floor)
        ix, iy = int(round(x)), int(round(y))
        x0, x1 = max(ix - r, 0), min(ix + r + 1, nx)
        y0, y1 = max(iy - r, 0), min(iy + r + 1, ny)
        if x0 >= x1 or y0 >= y1:
            return 0.0
        s = self.subsample
        sub = (np.arange(s) + 0.5) / s - 0.5
        dx = (np.arange(x0, x1)[:, None] + sub[None, :] - x).ravel()
        dy = (np.arange(y0, y1)[:, None] + sub[None, :] - y).ravel()
        values = self.profile(dy[:, None] ** 2 + dx[None, :] ** 2)
        if s > 1:
            values = values.reshape(y1 - y0, s, x1 - x0, s).mean(axis=(1, 3))
        values *= flux
        frame[y0:y1, x0:x1] += values
        return float(values.sum())
