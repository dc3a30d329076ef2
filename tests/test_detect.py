"""sep source catalogue: positions, aperture photometry, flags, CAT.ODI columns."""

import math

import numpy as np
import pytest
import sep
from astropy.io import fits
from scipy.special import erf

from podisteps.astrometry import header_wcs, sky_offsets
from podisteps.catalog.detect import (APERTURE_DIAMETERS, CATALOG_COLUMNS, FLAG_BITS, MAX_MASKED_FRACTION,
                                      _bits_near, merge_converged, source_catalog, source_positions)
from podisteps.maskbits import MASK_BITS

SCALE = 0.5  # arcsec/px
SIGMA = 1.5  # px
SKY = 400.0  # ADU
GAIN = 1.3


def _header(ny, nx, *, tpv=False):
    h = fits.Header()
    h["CTYPE1"], h["CTYPE2"] = ("RA---TPV", "DEC--TPV") if tpv else ("RA---TAN", "DEC--TAN")
    h["CRPIX1"], h["CRPIX2"] = nx / 2.0 + 300.0, ny / 2.0 - 200.0  # the axis lies off the frame
    h["CRVAL1"], h["CRVAL2"] = 359.99, 30.0
    h["CD1_1"], h["CD2_2"] = SCALE / 3600.0, SCALE / 3600.0
    h["CD1_2"], h["CD2_1"] = 0.0, 0.0
    if tpv:
        for axis in (1, 2):
            h[f"PV{axis}_1"] = 1.0
            h[f"PV{axis}_7"] = h[f"PV{axis}_9"] = 0.12
    h["GAIN"] = GAIN
    return h


def _render(shape, x, y, flux, sigma=SIGMA):
    """Pixel-integrated circular Gaussians at 0-based (x, y), total flux ``flux`` ADU."""
    ny, nx = shape
    img = np.zeros(shape)
    edges_x, edges_y = np.arange(nx + 1) - 0.5, np.arange(ny + 1) - 0.5
    for xi, yi, fi in zip(x, y, flux):
        px = np.diff(0.5 * erf((edges_x - xi) / (math.sqrt(2) * sigma)))
        py = np.diff(0.5 * erf((edges_y - yi) / (math.sqrt(2) * sigma)))
        img += fi * np.outer(py, px)
    return img


def _scene(seed=11, n_side=8, shape=(320, 320)):
    rng = np.random.default_rng(seed)
    g = np.linspace(30, shape[1] - 31, n_side)
    xx, yy = np.meshgrid(g, g)
    x = xx.ravel() + rng.uniform(-0.5, 0.5, xx.size)
    y = yy.ravel() + rng.uniform(-0.5, 0.5, xx.size)
    flux = 10 ** rng.uniform(3.6, 5.3, x.size)  # S/N ~ 30 ... 500 in the AUTO aperture
    truth = _render(shape, x, y, flux)
    noisy = rng.poisson((truth + SKY) * GAIN) / GAIN + rng.normal(0.0, 4.0, shape)
    return x, y, flux, truth, noisy.astype(np.float32)


def _match(cat, x, y):
    d = np.hypot(np.asarray(cat["X"])[:, None] - 1.0 - x, np.asarray(cat["Y"])[:, None] - 1.0 - y)
    return np.argmin(d, axis=0), np.min(d, axis=0)


def test_positions_photometry_and_columns():
    x, y, flux, truth, image = _scene()
    header = _header(*image.shape, tpv=True)
    # FITS data arrive big-endian
    cat = source_catalog(image.astype(">f4"), header, ota=33)
    assert cat.colnames == CATALOG_COLUMNS
    assert len(cat) == x.size and (cat["OTA"] == 33).all() and (cat["FLAGS"] == 0).all()
    row, dist = _match(cat, x, y)
    cat = cat[row]
    snr = 1.0857 / np.asarray(cat["MAGERR_AUTO"])
    assert snr.min() > 20
    assert np.median(dist[snr > 50]) < 0.03 and dist[snr > 100].max() < 0.05  # px

    wcs = header_wcs(header)
    ra, dec = wcs.all_pix2world(x, y, 0)
    scale = np.asarray(cat["FWHM_WORLD"] / cat["FWHM_IMAGE"])
    da, dd = sky_offsets(cat["RA"], cat["DEC"], ra, dec)
    assert np.allclose(np.hypot(da, dd), dist * scale, atol=1e-4)  # RA/DEC through the TPV WCS, 1-based X/Y
    assert 0.99 * SCALE < np.median(scale) < 1.05 * SCALE  # the real (distorted) scale, not 0.11
    # FWHM_IMAGE assumes a Moffat beta = 3 profile (1.584 r_half): a Gaussian's (2 r_half) reads 20 % low
    assert abs(np.median(cat["FWHM_IMAGE"]) / (2.3548 * SIGMA) - 0.80) < 0.04
    assert abs(np.median(cat["BACKGROUND"]) - SKY) < 1.0

    # aperture magnitudes against the noise-free image in the same apertures at the true positions
    pulls = []
    for d in APERTURE_DIAMETERS:
        name = f"D{int(round(d * 10))}"
        f_true, _, _ = sep.sum_circle(truth, x, y, d / 2.0 / scale, subpix=0)
        m_true = -2.5 * np.log10(f_true)
        dm = np.asarray(cat[f"MAG_{name}"]) - m_true
        assert abs(np.median(dm)) < 0.01, name
        err = np.asarray(cat[f"MAGERR_{name}"])
        assert np.max(np.abs(dm)[err < 0.005]) < 0.02, name
        pulls.append(dm / err)
    assert 0.8 < np.std(np.concatenate(pulls)) < 1.25
    # the largest aperture holds all the light: analytic magnitude
    assert np.median(np.asarray(cat["MAG_D120"]) + 2.5 * np.log10(flux)) == pytest.approx(0.0, abs=0.01)
    assert np.median(np.asarray(cat["MAG_AUTO"]) + 2.5 * np.log10(flux)) == pytest.approx(0.0, abs=0.05)
    assert np.median(cat["ELONGATION"]) < 1.05 and np.median(cat["ELLIPTICITY"]) < 0.05
    assert np.allclose(cat["ELLIPTICITY"], 1.0 - 1.0 / cat["ELONGATION"], atol=1e-5)

    pos = source_positions(cat)
    assert pos.shape == (x.size, 2) and np.allclose(pos, np.column_stack([cat["X"], cat["Y"]]) - 1.0)


def test_flags_saturation_and_masked_pixels():
    shape = (200, 200)
    x = np.array([50.3, 150.2, 100.1, 60.0])
    y = np.array([50.1, 60.4, 150.3, 150.0])
    flux = np.array([2e4, 2e4, 3e6, 2e4])
    image = (_render(shape, x, y, flux) + SKY).astype(np.float32)
    image += np.random.default_rng(2).normal(0.0, 5.0, shape).astype(np.float32)
    image[60, 143:147] = np.nan  # NaN pixels inside the AUTO aperture of star 1
    mask = np.zeros(shape, np.uint16)
    mask[150, 63:65] = 4  # a BPM pixel pair 3-4 px from star 3
    cat = source_catalog(image, _header(*shape), ota=11, mask=mask)
    row, dist = _match(cat, x, y)
    assert dist.max() < 0.1
    flags = np.asarray(cat["FLAGS"])[row]
    assert flags[0] == 0
    assert flags[1] & FLAG_BITS["MASKED"] and flags[3] & FLAG_BITS["MASKED"]
    assert flags[2] & FLAG_BITS["SATURATED"]
    # partial apertures: flux over the unmasked pixels, flagged, with the masked fraction of the area
    assert flags[1] & FLAG_BITS["PARTIAL"] and not flags[0] & FLAG_BITS["PARTIAL"]
    assert cat["MASKFRAC_D120"][row[1]] == pytest.approx(4.0 / (math.pi * (6.0 / SCALE) ** 2), rel=0.02)
    assert cat["MASKFRAC_D20"][row[1]] == 0.0 and cat["MASKFRAC_D120"][row[0]] == 0.0
    assert cat["MAG_D120"][row[1]] < 0 and cat["MAG_D120"][row[0]] < 0


def test_saturated_and_bleed_mask_bits_in_the_auto_aperture_flag_saturation():
    shape = (200, 200)
    x, y = np.array([50.2, 150.3]), np.array([50.4, 140.1])
    image = (_render(shape, x, y, np.array([2e4, 2e4])) + SKY).astype(np.float32)
    mask = np.zeros(shape, np.uint16)
    mask[50, 54] = MASK_BITS["BLEED"]  # 4 px from star 0: inside its AUTO aperture
    mask[140, 175] = MASK_BITS["SATURATED"]  # 25 px from star 1: outside
    cat = source_catalog(image, _header(*shape), ota=11, mask=mask)
    row, dist = _match(cat, x, y)
    assert dist.max() < 0.1
    flags = np.asarray(cat["FLAGS"])[row]
    assert flags[0] & FLAG_BITS["SATURATED"] and not flags[1] & FLAG_BITS["SATURATED"]


def test_mask_bits_near_the_sources_give_the_full_frame_aperture_flags():
    """Saturation bits tested only in boxes around the sources flag the same AUTO ellipses as the full frame."""
    rng = np.random.default_rng(5)
    shape, n, bits = (300, 400), 500, MASK_BITS["SATURATED"] | MASK_BITS["BLEED"]
    mask = np.where(rng.random(shape) < 0.1, rng.choice([1, 8, 16, 24], shape), 0).astype(np.uint16)
    x, y = rng.uniform(-0.5, shape[1] - 0.5, n), rng.uniform(-0.5, shape[0] - 0.5, n)
    a = rng.uniform(0.5, 1.5, n)  # small ellipses among dense bits: a box 1 px short of the ellipse fails
    b, theta, k = a * rng.uniform(0.2, 1.0, n), rng.uniform(-math.pi / 2, math.pi / 2, n), rng.uniform(3.5, 5.0, n)
    near = _bits_near(mask, bits, x, y, np.ceil(k * a).astype(int) + 2)
    flagged = [sep.sum_ellipse(np.zeros(shape, np.float32), x, y, a, b, theta, k, mask=m, subpix=1)[2]
               & sep.APER_HASMASKED for m in ((mask & bits) != 0, near)]
    assert 0 < np.count_nonzero(flagged[0]) < n
    assert np.array_equal(flagged[0], flagged[1])


def test_partial_apertures_against_the_unmasked_truth():
    """A bad column through a star: each aperture's flux is the noise-free flux of its unmasked pixels, the
    masked fraction its missing area; beyond half the area masked, magnitude 99; masks and the frame
    edge both count."""
    shape = (200, 200)
    x, y, flux = np.array([100.2, 60.3, 100.4]), np.array([100.3, 60.1, 6.2]), np.array([4e5, 4e5, 4e5])
    truth = _render(shape, x, y, flux)
    image = (truth + SKY + np.random.default_rng(5).normal(0.0, 3.0, shape)).astype(np.float32)
    mask = np.zeros(shape, np.uint16)
    mask[:, 95:97] = 4  # a bad column pair 3.7-5.7 px left of star 0
    mask[:120, :80] = 4  # star 1 in a 13 x 13 px window: its largest apertures are mostly masked
    mask[54:67, 54:67] = 0
    cat = source_catalog(image, _header(*shape), ota=11, mask=mask)
    row, dist = _match(cat, x, y)
    assert dist.max() < 0.1
    cat = cat[row]
    good = (mask == 0).astype(float)
    xc, yc = np.asarray(cat["X"], float) - 1.0, np.asarray(cat["Y"], float) - 1.0  # expectations at the centroids
    for d in APERTURE_DIAMETERS:
        name, radius = f"D{int(round(d * 10))}", d / 2.0 / SCALE
        area, _, _ = sep.sum_circle(good, xc, yc, radius, subpix=0)
        frac = 1.0 - area / (math.pi * radius**2)
        assert np.allclose(cat[f"MASKFRAC_{name}"], frac, atol=1e-3), name
        f_true, _, _ = sep.sum_circle(truth * good, xc, yc, radius, subpix=0)
        mag = np.asarray(cat[f"MAG_{name}"])
        usable = frac <= MAX_MASKED_FRACTION
        assert np.all(np.abs(mag[usable] + 2.5 * np.log10(f_true[usable])) < 0.01), name
        assert np.all(mag[~usable] == 99.0), name
        assert np.all((np.asarray(cat["FLAGS"]) & FLAG_BITS["PARTIAL"] != 0) >= (frac > 1e-3)), name
    assert cat["MASKFRAC_D120"][2] > 0.2 and cat["MASKFRAC_D20"][1] == 0.0  # off the frame's edge; complete
    assert cat["MAG_D120"][1] == 99.0 and cat["MAG_D40"][1] < 0 and cat["FLAGS"][1] & FLAG_BITS["PARTIAL"]


def test_converged_children_are_merged_and_close_pairs_kept():
    """Twins within one window sigma of a brighter source go; a pair further apart stays."""
    x, y = np.array([10.0, 10.3, 30.0, 39.0, 60.0]), np.array([10.0, 10.2, 30.0, 30.0, 60.0])
    keep = merge_converged(x, y, np.array([3.8, 3.8, 3.8, 3.8, 1.2]), np.array([5.0, 9.0, 9.0, 8.0, 1.0]))
    assert keep.tolist() == [False, True, True, True, True]
    assert merge_converged([1.0], [1.0], [3.0], [1.0]).tolist() == [True]


def test_empty_and_blank_frames():
    shape = (128, 128)
    flat = np.random.default_rng(0).normal(SKY, 5.0, shape)
    assert len(source_catalog(flat, _header(*shape), ota=22)) == 0
    blank = np.full(shape, np.nan)
    cat = source_catalog(blank, _header(*shape), ota=22)
    assert len(cat) == 0 and cat.colnames == CATALOG_COLUMNS


def test_frame_overflowing_the_pixel_stack_runs_again_with_the_same_catalogue():
    x, y, flux, _, image = _scene(seed=4, n_side=6)
    header, before = _header(*image.shape), sep.get_extract_pixstack()
    try:
        sep.set_extract_pixstack(image.size // 10)
        reference = source_catalog(image, header, ota=11)
        sep.set_extract_pixstack(50)  # fewer than the pixels above the threshold of the brightest stars
        with pytest.raises(Exception, match="pixel buffer full"):
            sep.extract(image - SKY, 6.0, err=5.0)
        cat = source_catalog(image, header, ota=11)
        assert sep.get_extract_pixstack() == image.size // 10
    finally:
        sep.set_extract_pixstack(before)
    assert len(cat) == x.size and _match(cat, x, y)[1].max() < 0.15  # S/N 30 and up
    assert all(np.array_equal(cat[c], reference[c]) for c in CATALOG_COLUMNS)


def test_overwrite_gives_the_same_catalogue_and_uses_only_a_native_float32_input():
    x, y, _, _, image = _scene(seed=5, n_side=5)
    image = image.astype(np.float32)
    image[40:44, 50:90] = np.nan  # a masked patch: zeroed in place
    mask = np.zeros(image.shape, np.uint16)
    mask[100:104, :] = 1
    header = _header(*image.shape)
    reference = source_catalog(image, header, ota=11, mask=mask)
    swapped = image.astype(">f4")
    kept = swapped.copy()
    same = source_catalog(swapped, header, ota=11, mask=mask, overwrite=True)
    assert np.array_equal(swapped, kept, equal_nan=True)  # not native: copied, untouched
    scratch = image.copy()
    cat = source_catalog(scratch, header, ota=11, mask=mask, overwrite=True)
    assert not np.array_equal(scratch, image, equal_nan=True)  # worked on in place
    assert np.all(scratch[40:44, 50:90] == 0.0) and np.all(scratch[100:104] == 0.0)
    assert len(cat) >= x.size - 2
    for other in (same, cat):
        assert all(np.array_equal(other[c], reference[c]) for c in CATALOG_COLUMNS)
