"""The per-OTA WCS as the posterior mean under the canned model's prior (podisteps.astrometry.posterior).

Catalogue level on one full-size pODI OTA header (0.1125"/px, TPV radial distortion; the headers of
``test_astrometry``): the canned model is the true WCS with an injected error, the reference stars are the
true positions with errors, and the error of a solution is its p90 over a 15 x 15 grid of the OTA against
the true WCS (as ``tests/catalogue_sweep.py`` measures it).
"""

import math

import numpy as np
import pytest

from podisteps.astrometry import (
    canned_prior,
    from_tangent_plane,
    header_wcs,
    posterior_ota,
    refine_ota,
    sky_offsets,
    tangent_plane,
)

from .test_astrometry import CENTRES, SIZE, ota_header

OTA = 44


def _p90(true, header) -> float:
    """p90 distance between two OTA WCS over a 15 x 15 grid of the OTA, arcsec."""
    g = np.linspace(1.0, SIZE, 15)
    xx, yy = (v.ravel() for v in np.meshgrid(g, g))
    return float(np.percentile(np.hypot(*sky_offsets(*header_wcs(header).all_pix2world(xx, yy, 1),
                                                     *header_wcs(true).all_pix2world(xx, yy, 1))), 90))


def _canned(true, *, shift_mas, rotation):
    """``true`` with its CRVAL moved by ``shift_mas`` (East, North) and CD rotated by ``rotation`` rad."""
    out = true.copy()
    out["CRVAL1"], out["CRVAL2"] = from_tangent_plane(shift_mas[0] / 1000.0, shift_mas[1] / 1000.0,
                                                      true["CRVAL1"], true["CRVAL2"])
    c, s = math.cos(rotation), math.sin(rotation)
    cd = np.array([[c, -s], [s, c]]) @ np.array([[true["CD1_1"], true["CD1_2"]], [true["CD2_1"], true["CD2_2"]]])
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(cd[i - 1, j - 1])
    return out


def _references(true, x, y, offsets_arcsec):
    """Reference (ra, dec) of stars at pixels ``(x, y)`` moved by ``offsets_arcsec`` (shape (2, n))."""
    ra, dec = header_wcs(true).all_pix2world(x, y, 1)
    xi, eta = tangent_plane(ra, dec, ra, dec)
    return from_tangent_plane(xi + offsets_arcsec[0], eta + offsets_arcsec[1], ra, dec)


def test_few_stars_with_correlated_reference_errors_stay_at_least_as_good_as_the_canned_model():
    """10 stars in one corner whose reference errors share a tilt (+-40 mas across the corner, stated as
    40 mas each): the free CRVAL + CD fit extrapolates the tilt over the OTA and ends far worse than the
    33 mas canned model; the posterior keeps the tilt to what the prior allows and is no worse."""
    rng = np.random.default_rng(3)
    true = ota_header(CENTRES[OTA], (150.0, 45.0))
    canned = _canned(true, shift_mas=(25.0, -20.0), rotation=0.0)
    x, y = rng.uniform(150, 1100, (2, 10))
    tilt = 0.040 * (x - 625.0) / 475.0
    ref_ra, ref_dec = _references(true, x, y, np.vstack([tilt, tilt]) + rng.normal(0, 0.01, (2, 10)))
    free, _, refined = refine_ota(canned, x, y, ref_ra, ref_dec, mode="otashear", f_scale=10.0)
    assert refined
    solved, resid, refined = posterior_ota(canned, x, y, ref_ra, ref_dec, pair_sigma=np.full(10, 0.04),
                                           prior=canned_prior(), mode="otashear")
    assert refined and resid.shape == (10, 2)
    errors = {name: _p90(true, h) for name, h in (("canned", canned), ("free", free), ("posterior", solved))}
    assert errors["canned"] == pytest.approx(0.032, abs=0.002), errors
    assert errors["free"] > 1.5 * errors["canned"], errors
    assert errors["posterior"] <= errors["canned"], errors


def test_many_stars_recover_an_injected_canned_model_error():
    """300 stars over the OTA with independent 40 mas reference errors: a canned model off by (40, -30) mas
    and rotated by 3e-5 rad about the optical axis (p90 0.046") is corrected to the stars' own limit (the
    free CRVAL + CD fit's p90, within 10 %), far below the canned model."""
    rng = np.random.default_rng(4)
    true = ota_header(CENTRES[OTA], (150.0, 45.0))
    canned = _canned(true, shift_mas=(40.0, -30.0), rotation=3e-5)
    x, y = rng.uniform(20, SIZE - 20, (2, 300))
    ref_ra, ref_dec = _references(true, x, y, rng.normal(0, 0.04, (2, 300)))
    solved, _, _ = posterior_ota(canned, x, y, ref_ra, ref_dec, pair_sigma=np.full(300, 0.04), prior=canned_prior())
    free, _, _ = refine_ota(canned, x, y, ref_ra, ref_dec, mode="otashear", f_scale=10.0)
    errors = {name: _p90(true, h) for name, h in (("canned", canned), ("free", free), ("posterior", solved))}
    assert errors["canned"] > 0.04, errors
    assert errors["posterior"] < 0.3 * errors["canned"] and errors["posterior"] <= 1.1 * errors["free"], errors


def test_the_prior_scales_to_a_headers_stated_error():
    """The shipped widths (podisteps/data/astrometry.toml) and a header's ASTRRMS1/2 (0.3" per axis)."""
    prior = canned_prior()
    assert (prior.shift_arcsec, prior.linear_arcsec) == (0.028, 0.002)
    header = ota_header(CENTRES[OTA], (150.0, 45.0))
    header["ASTRRMS1"] = header["ASTRRMS2"] = 0.3 / 3600.0
    wide = canned_prior(header)
    assert wide.total_arcsec == pytest.approx(0.3)
    assert wide.shift_arcsec / wide.linear_arcsec == pytest.approx(14.0)
