"""Ghost-free master flats (``-flatghost``): the pupil ghost of each flat frame, in flat units, on one OTA.

Each flat frame's ghost was fitted like a science exposure's (a centre per ghost OTA, then one scale
``PUPLGFAC`` in ADU, on the frame detrended without a flat). Divided by the frame's normalisation level
(ADU), the scale becomes the ghost's amplitude in the normalised frame's units, so

    ghost = template placed at the frame's centre, turned by (rotator - template angle), x PUPLGFAC / level

is what :func:`flat_ghosts` returns per frame, to be subtracted from the normalised frame before the frames
are combined. It works per frame, not on the combined master, because the ghost turns with the rotator:
flats taken at several rotator angles hold rings at different places. See ``docs/masters.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ..focalplane.pupilghost import place_template

__all__ = ["GhostFit", "FlatGhosts", "flat_ghosts"]


@dataclass(frozen=True)
class GhostFit:
    """The pupil-ghost fit of one flat frame and the frame's own numbers.

    Attributes
    ----------
    factor : float
        Fitted ghost scale ``PUPLGFAC``, ADU (<= 0: no ghost was fitted).
    centres : Mapping[int, tuple[float, float]]
        Fitted ghost centre (x, y) per OTA number, frame px; OTAs without a centre are left out.
    level : float
        The frame's normalisation level, ADU (what the frame is divided by before combining).
    rotator : float
        The frame's rotator angle ``ROTSTART``, degrees.
    """

    factor: float
    centres: Mapping[int, tuple[float, float]]
    level: float
    rotator: float

    @classmethod
    def from_product(cls, hdul: fits.HDUList, *, level: float, rotator: float) -> "GhostFit":
        """Read the scale (``PUPLGFAC`` of the primary header) and the centres (``PGCENTRE`` table, columns
        ``OTA``, ``PGCNTR_X``, ``PGCNTR_Y``; absent when none was fitted) of an opened focal-plane fit."""
        table = hdul["PGCENTRE"].data if "PGCENTRE" in hdul else ()
        centres = {int(r["OTA"]): (float(r["PGCNTR_X"]), float(r["PGCNTR_Y"])) for r in table}
        return cls(float(hdul[0].header["PUPLGFAC"]), centres, float(level), float(rotator))

    def relative(self) -> float:
        """The ghost's scale in flat units: ``factor / level`` (dimensionless)."""
        return self.factor / self.level


@dataclass(frozen=True)
class FlatGhosts:
    """Per input frame the ghost to subtract from it on one OTA, and the cards the master's OTA header gets.

    Attributes
    ----------
    ghosts : list of numpy.ndarray or None
        One per frame, in input order: shape of the OTA frame, float32, flat units; None where the frame
        has no ghost on this OTA (no scale fitted, or no centre on this OTA).
    scales : list of float
        ``factor / level`` of the frames that have a ghost here (dimensionless).
    """

    ghosts: list
    scales: list

    @property
    def cards(self) -> dict:
        """``PGAFCTD`` (any ghost removed) and ``PGSCALNG`` (mean removed scale, flat units) as header cards."""
        return {"PGAFCTD": (bool(self.scales), "pupil ghost removed from this flat"),
                "PGSCALNG": (float(np.mean(self.scales)) if self.scales else 0.0,
                             "mean ghost scale removed, flat units")}


def flat_ghosts(
    template: np.ndarray,
    frames: Sequence[GhostFit],
    *,
    ota: int,
    shape: tuple[int, int],
    template_angle: float = 0.0,
) -> FlatGhosts:
    """The pupil ghost of each flat frame on one OTA, in the units of the normalised frame.

    Parameters
    ----------
    template : numpy.ndarray
        Shape (my, mx): the ghost template (``COMBINED`` image), in frame px of this data, relative units
        (the ghost per unit of ``PUPLGFAC``).
    frames : sequence of GhostFit
        The fit of each flat frame, in the order the frames are combined.
    ota : int
        The OTA the ghosts are placed on.
    shape : (int, int)
        (ny, nx) of the OTA frame, px.
    template_angle : float, optional
        Rotator angle the template was made at (``ROTANGLE``), degrees; each frame's ghost is turned by
        its rotator minus this.

    Returns
    -------
    FlatGhosts
        The ghosts (float32, shape ``shape``) and the header cards of the master's OTA.
    """
    ghosts, scales = [], []
    for fit in frames:
        if fit.factor <= 0 or ota not in fit.centres:
            ghosts.append(None)
            continue
        placed = place_template(template, shape, fit.centres[ota], angle=fit.rotator - template_angle)
        ghosts.append(placed * np.float32(fit.relative()))
        scales.append(fit.relative())
    return FlatGhosts(ghosts, scales)
