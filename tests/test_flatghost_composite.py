"""The flat-ghost composite (podisteps.masters.flatghost) without Luigi, on test-instrument OTA frames.

Three odi_r flats of one OTA (512 x 512 frame px, 8 full-size px each) carry the simulator's pupil-ghost
ring ``P(r)`` at their own centre, scale and level: ``level x (1 + s x P)``. The template is the
simulator's profile drawn about the middle of a larger image. With each frame's true centre, rotator and
``PUPLGFAC = level x s``, the ghost :func:`flat_ghosts` returns must be ``s x P`` to 1e-4, so the normalised
frame minus it is flat to 1e-4 (the ring is 0.0335 high; a centre 1 frame px off errs by 5e-4). Flats with
no fitted scale, with their centre on another OTA only, or with no centre at all get no ghost.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps.focalplane import pupilghost
from podisteps.masters.flatghost import GhostFit, flat_ghosts
from podisteps.simulate import effects

SCALE, N, OTA, FILTER = 8, 512, 33, "odi_r"
TEMPLATE_N = 1101  # frame px: the ring (r2 = 4100 full-size px) fits with a margin
#: (centre x, y in full-size px, true scale s, level ADU, rotator deg) of the flats with a ghost here.
FLATS = ((4200.0, 4150.0, 1.00, 21000.0, 0.0), (1500.0, 2600.0, 0.85, 15000.0, 40.0),
         (3000.0, 800.0, 1.20, 30000.0, -40.0))
BOUND = 1e-4  # flat units; the ring's peak is 0.0335, one frame px off its centre is 5e-4


def to_frame(full: float) -> float:
    """Frame px of a full-size px coordinate (0-based pixel centres)."""
    return (full + 0.5) / SCALE - 0.5


def true_ghost(cx: float, cy: float) -> np.ndarray:
    """The simulator's ghost ``P`` on the OTA frame, centre (cx, cy) in full-size px."""
    g = (np.arange(N) + 0.5) * SCALE - 0.5
    return effects.pupil_ghost_profile(FILTER, np.hypot((g - cx)[None, :], (g - cy)[:, None])).astype(float)


def template() -> np.ndarray:
    """The simulator's profile drawn about the template's middle, radii in frame px."""
    radii = np.linspace(0.0, 4400.0, 441)
    middle = ((TEMPLATE_N - 1) / 2, (TEMPLATE_N - 1) / 2)
    return pupilghost.radial_template(radii / SCALE, effects.pupil_ghost_profile(FILTER, radii).astype(float),
                                      (TEMPLATE_N, TEMPLATE_N), middle)


def fit_product(factor: float, centres: dict) -> fits.HDUList:
    """An in-memory focal-plane fit: ``PUPLGFAC`` and, if any centre, the ``PGCENTRE`` table."""
    hdul = fits.HDUList([fits.PrimaryHDU()])
    hdul[0].header["PUPLGFAC"] = factor
    if centres:
        table = Table(rows=[(o, x, y) for o, (x, y) in centres.items()], names=("OTA", "PGCNTR_X", "PGCNTR_Y"))
        hdul.append(fits.BinTableHDU(table, name="PGCENTRE"))
    return hdul


def test_flat_ghosts_match_the_injected_ring():
    fits_in = [GhostFit.from_product(fit_product(level * s, {OTA: (to_frame(cx), to_frame(cy)), 34: (1.0, 2.0)}),
                                     level=level, rotator=rot) for cx, cy, s, level, rot in FLATS]
    fits_in += [GhostFit.from_product(fit_product(0.0, {OTA: (200.0, 200.0)}), level=2e4, rotator=0.0),
                GhostFit.from_product(fit_product(500.0, {34: (200.0, 200.0)}), level=2e4, rotator=0.0),
                GhostFit.from_product(fit_product(500.0, {}), level=2e4, rotator=0.0)]
    result = flat_ghosts(template(), fits_in, ota=OTA, shape=(N, N), template_angle=10.0)

    assert [g is None for g in result.ghosts] == [False] * len(FLATS) + [True] * 3
    for (cx, cy, s, level, _), ghost in zip(FLATS, result.ghosts):
        injected = s * true_ghost(cx, cy)
        assert ghost.shape == (N, N) and ghost.dtype == np.float32
        assert injected.max() > 0.025  # the ring is on this OTA: a missing ghost would fail below
        assert np.abs(ghost - injected).max() < BOUND
        normalised = level * (1 + injected) / level
        assert np.abs(normalised - ghost - 1).max() < BOUND
    np.testing.assert_allclose(result.scales, [s for _, _, s, _, _ in FLATS], rtol=1e-12)
    assert result.cards["PGAFCTD"][0] is True
    assert abs(result.cards["PGSCALNG"][0] - np.mean([s for _, _, s, _, _ in FLATS])) < 1e-12


def test_no_ghost_fitted_leaves_the_flat():
    fit = GhostFit.from_product(fit_product(-1.0, {OTA: (200.0, 200.0)}), level=2e4, rotator=0.0)
    result = flat_ghosts(template(), [fit], ota=OTA, shape=(N, N))
    assert result.ghosts == [None] and result.cards == {
        "PGAFCTD": (False, "pupil ghost removed from this flat"),
        "PGSCALNG": (0.0, "mean ghost scale removed, flat units")}
