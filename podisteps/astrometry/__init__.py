"""Astrometric calibration across the focal plane (docs/astrometry.md; docs/reduction-steps.md, 'Exposure-wide steps';
``-fixwcs``).

The steps follow QuickReduce's ``dev_ccmatch``, with the changes listed in docs/quickreduce.md, 'Design choices':

1. :func:`find_pointing` - the robust initial guess. Sources and reference stars are projected onto the
   tangent plane at the optical axis (the common ``CRVAL`` of all OTAs). For each trial rotation of the
   sources about the axis, every source -> reference offset within the search radius goes into a 2-D
   histogram; its peak is the candidate shift. The rotation with the highest peak wins; its contrast
   against the rotations more than 40' away measures how unique the solution is (QuickReduce's
   ``WCS_QUAL``). A solution is accepted only if it also has enough matches and chance cannot explain
   them (:func:`match_significance`, the trials of the whole search included): blank or sparse fields and
   wrong catalogues fail there. Crowded fields stay fast: the histogram takes the brightest sources near
   the axis, up to a fixed number of pairs.
2. :func:`fit_shift_rotation` - least squares on (angle, shift) with robust loss, then
   :func:`apply_shift_rotation` writes it into every OTA header (``CD <- R CD``, ``CRVAL`` moved).
3. :func:`posterior_ota` - per OTA, the posterior mean of ``CRVAL`` (``otashift``) or ``CRVAL`` and ``CD``
   (``otashear``): the canned model is a Gaussian prior on the OTA's shift, rotation, scale and shear
   (:func:`canned_prior`, instrument data), the matched stars the likelihood with each pair's reference
   and centroid errors, so an OTA with a few stars moves only as far as they outweigh the model; the TPV
   ``PV`` terms stay fixed. :func:`refine_ota` is QuickReduce's unregularised least squares.
4. :func:`wcs_quality` - the ``WCS_RMSA`` ... ``WCSCRMS`` keywords.

:func:`solve_focal_plane` chains the steps for a whole exposure.

Modules, by algorithm: :mod:`.projection` (sky, tangent plane, pixels), :mod:`.matching` (unique
nearest-neighbour matches, WCS quality), :mod:`.pointing` (the histogram search), :mod:`.refinement`
(focal-plane shift and rotation, unregularised per-OTA ``CRVAL``/``CD``), :mod:`.posterior` (the per-OTA
posterior mean), :mod:`.solve` (the whole exposure).

Conventions
-----------
- Pixel positions given to and returned by this module are **1-based FITS pixels** (SExtractor's and
  ``CAT.ODI``'s ``X``, ``Y``) unless a name says ``0-based``.
- Sky offsets are ``(dalpha cos(delta), ddelta)`` in arcsec, measured exactly as gnomonic coordinates in
  the tangent plane of the second position (valid at the poles and across RA = 0).
- The shift of a solution is the position of the new optical axis in the tangent plane of the old one,
  arcsec (``~ (dRA cos(Dec), dDec)`` of the axis); the rotation is counter-clockwise on the sky as seen
  on the detector (East +x, North +y), degrees, the same sense as ``CD <- R(angle) CD``.
"""

from .matching import match_nearest, reference_tree, wcs_quality
from .pointing import PointingSolution, find_pointing, match_significance
from .posterior import CannedPrior, canned_prior, centroid_sigma, posterior_ota
from .projection import (
    from_tangent_plane,
    header_wcs,
    odi2wcs,
    pixel_scale,
    sky_offsets,
    tangent_plane,
    unit_vectors,
    wcs2odi,
)
from .refinement import apply_shift_rotation, fit_shift_rotation, refine_ota
from .solve import FocalPlaneSolution, nonsidereal_offsets, solve_focal_plane

__all__ = [
    "header_wcs",
    "tangent_plane",
    "from_tangent_plane",
    "sky_offsets",
    "pixel_scale",
    "reference_tree",
    "match_nearest",
    "unit_vectors",
    "PointingSolution",
    "match_significance",
    "find_pointing",
    "fit_shift_rotation",
    "apply_shift_rotation",
    "CannedPrior",
    "canned_prior",
    "centroid_sigma",
    "posterior_ota",
    "refine_ota",
    "wcs_quality",
    "odi2wcs",
    "wcs2odi",
    "nonsidereal_offsets",
    "FocalPlaneSolution",
    "solve_focal_plane",
]
