"""Photometric calibration of an exposure (docs/photometry.md, ``podi_photcalib.photcalib``).

The source catalogue (``CAT.ODI`` columns of :mod:`podisteps.catalog.detect`) is matched to a reference catalogue
(columns of :mod:`podisteps.catalog.refcat`); the zero point is the clipped median of ``m_ref - m_odi`` in the
aperture chosen from the seeing, for 1 s of exposure. Differences from QuickReduce, by design:

- the match radius is a parameter (QuickReduce ignores its argument and always uses 2");
- colour terms are looked up per reference catalogue *and* filter in ``podisteps/data/colorterms.toml`` and applied
  for every catalogue (QuickReduce never applies the Pan-STARRS/custom-catalogue terms);
- ``SKYMAG``, ``PHOTDPTH`` use the real pixel scale (from the WCS CD matrices, :func:`nominal_pixel_scale`),
  not 0.11"/px, and ``PHOTDPTH`` converts the sky to electrons with the gain (QuickReduce adds ADU and e-
  squared);
- ``SKYMAG`` is the sky brightness as observed, in the total-flux system: it uses the zero point for the
  total flux (``PHOTZP_X`` plus the aperture correction ``PHOTAPCR`` measured on the calibration stars)
  at airmass 1 (sky light is not extinguished by the whole atmosphere above the telescope); QuickReduce's
  ``PHOTZP_X`` makes it brighter by the aperture correction and ``k (AIRMASS - 1)`` (0.05-0.2 mag);
- ``PHOTZPER`` is the standard error of the *median*, ``sqrt(pi/2) std / sqrt(N)`` (QuickReduce reports the
  error of the mean, an underestimate for the median it publishes); ``PHOTZP_N``, ``PHOTZPER`` and the
  ``ZPSLP_*`` fit are given whenever calibration succeeds (QuickReduce needs more than 10 stars);
- a failure never raises: the keywords say why (``PHOTNOTE``) with ``-99`` values and the star counts.

Modules: ``zeropoint`` (matching, colour terms, the zero point; re-exported here), ``keywords`` (the
``PHOT*`` and ``SKYMAG`` cards; re-exported), ``photflat`` (the photometric flat from zero-point residuals,
``-autophotflat``; imported by module).

Conventions: magnitudes are ``-2.5 log10(ADU)``; ``zp = m_ref - (m_instrumental + 2.5 log10 EXPTIME)`` is
the zero point for 1 ADU/s; the reference magnitude is colour-corrected as
``m_ref -= c0 + c1 * (m_b1 - m_b2)``.
"""

from .keywords import (
    extension_keywords,
    failed_keywords,
    fit_radial_zp,
    nominal_pixel_scale,
    photometric_depth,
    photometry_keywords,
    sky_magnitude,
)
from .zeropoint import (
    SDSS_WAVELENGTHS,
    UNDEFINED,
    ColourTerm,
    PhotResult,
    choose_aperture,
    clipped_stars,
    colour_term,
    photcalib,
    reference_band,
    usable_stars,
)

__all__ = [
    "SDSS_WAVELENGTHS",
    "ColourTerm",
    "PhotResult",
    "reference_band",
    "colour_term",
    "choose_aperture",
    "photcalib",
    "sky_magnitude",
    "photometric_depth",
    "nominal_pixel_scale",
    "photometry_keywords",
    "extension_keywords",
    "failed_keywords",
    "fit_radial_zp",
    "usable_stars",
    "clipped_stars",
    "UNDEFINED",
]
