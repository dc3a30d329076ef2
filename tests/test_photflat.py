"""Photometric flat field from zero-point residuals: recovery of an injected radial gradient, application."""

import math

import numpy as np
import pytest

from podisteps.astrometry import header_wcs
from podisteps.photometry import photcalib
from podisteps.photometry.photflat import apply_photflat, correct_magnitudes, photflat_at, photometric_flat
from tests.test_photometry import CENTER, NPIX, SCALE, ota_header, synthetic_field

STEP = 64  # px: 9 nodes span the 512-px test OTAs as 512-px steps span a 4096-px OTA
OTAS = tuple(10 * c + r for c in range(1, 6) for r in range(1, 6))  # 5 x 5 OTAs of 461", about ODI's field
HEADERS = {ota: ota_header(ota) for ota in OTAS}
N_STARS = 11000  # about 20 per smoothing circle of 120" radius
GRADIENT = 0.03  # flux excess at the mosaic corner
R_CORNER = 2.5 * NPIX * SCALE * math.sqrt(2.0)  # arcsec


def radial_gain(ra, dec):
    """Injected relative sensitivity ``1 + 0.03 (r / r_corner)^2``."""
    r = 3600.0 * np.hypot((ra - CENTER[0]) * math.cos(math.radians(CENTER[1])), dec - CENTER[1])
    return 1.0 + GRADIENT * (r / R_CORNER) ** 2


def zp_offset(ra, dec):
    return 2.5 * np.log10(radial_gain(ra, dec))


@pytest.fixture(scope="module")
def gradient_field():
    cat, ref = synthetic_field(seed=21, n=N_STARS, filtername="odi_r", delta=zp_offset, otas=OTAS)
    res = photcalib(cat, ref, filtername="odi_r", exptime=60.0, airmass=1.0)
    pf = photometric_flat(res.photcalib, HEADERS, nodes=9, step_px=STEP, smoothing_arcsec=120.0)
    return cat, ref, res, pf


def test_photflat_recovers_radial_gradient(gradient_field):
    _, _, _, pf = gradient_field
    pix = np.arange(1, NPIX + 1, 4, dtype=float)
    gx, gy = np.meshgrid(pix, pix)
    truth = {ota: radial_gain(*header_wcs(h).all_pix2world(gx, gy, 1)) for ota, h in HEADERS.items()}
    norm = np.mean([t.mean() for t in truth.values()])
    ratio = np.array([pf[ota][gy.astype(int) - 1, gx.astype(int) - 1] / (truth[ota] / norm) for ota in HEADERS])
    assert pf[33].shape == (NPIX, NPIX) and pf[33].dtype == np.float32
    assert np.mean([m.mean() for m in pf.values()]) == pytest.approx(1.0, abs=1e-6)
    assert np.max(np.abs(ratio - 1.0)) < 0.005
    assert np.ptp([m.max() for m in pf.values()] + [m.min() for m in pf.values()]) > 0.025


def test_corrected_catalogue_has_flat_zero_points(gradient_field):
    cat, ref, res, pf = gradient_field
    again = photcalib(correct_magnitudes(cat, pf), ref, filtername="odi_r", exptime=60.0, airmass=1.0)
    flat = photcalib(*synthetic_field(seed=21, n=N_STARS, filtername="odi_r", otas=OTAS), filtername="odi_r", exptime=60.0, airmass=1.0)
    assert res.zp_std > 1.3 * flat.zp_std
    assert again.zp_std == pytest.approx(flat.zp_std, rel=0.05)
    assert max(abs(off) for off, _ in again.ota_offsets.values()) < 0.003


def test_apply_photflat_keeps_the_sky_and_scales_the_flux():
    pf = np.full((4, 5), 1.02, np.float32)
    data = np.full((4, 5), 500.0)
    data[2, 3] += 1020.0
    out = apply_photflat(data, pf, 500.0)
    assert out.dtype == np.float32 and out[0, 0] == pytest.approx(500.0)
    assert out[2, 3] - 500.0 == pytest.approx(1000.0, rel=1e-6)


def test_nodes_without_stars_and_other_otas(gradient_field):
    _, _, res, _ = gradient_field
    far = {**HEADERS, 66: ota_header(66)}
    far[66]["CRVAL2"] += 2.0  # no star within the smoothing radius
    pf = photometric_flat(res.photcalib, far, nodes=9, step_px=STEP)
    assert np.ptp(pf[66]) == 0.0
    assert photflat_at(pf, [33, 77], [1.0, 1.0], [1.0, 1.0])[1] == 1.0
    assert photflat_at(pf, [33], [1.0], [1.0])[0] == pf[33][0, 0]
    empty = res.photcalib.copy()
    empty["USED4CALIB"] = False
    assert photometric_flat(empty, HEADERS) == {}
