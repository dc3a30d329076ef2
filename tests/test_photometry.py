"""Photometric calibration: reference band, colour terms, aperture, zero point, keywords, radial fit.

The synthetic fields are built from a known zero point, colour terms, exposure time and noise: a mosaic of
3 x 3 small TAN OTAs (512 px of 0.9", an 8x8-binned OTA), SDSS-like stars with random colours, Gaussian
PSF aperture magnitudes, and reference/ODI noise equal to the quoted errors.
"""

import math

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack

from podisteps.astrometry import header_wcs, pixel_scale
from podisteps.catalog.detect import APERTURE_DIAMETERS
from podisteps.photometry import (choose_aperture, colour_term, extension_keywords, failed_keywords, fit_radial_zp,
                                  photcalib, photometry_keywords, reference_band)

SCALE = 0.9  # arcsec/px of the test OTAs
NPIX = 512
CENTER = (150.0, 30.0)
OTAS = (22, 23, 24, 32, 33, 34, 42, 43, 44)
REAL_SCALE = 0.1125  # arcsec/px of an unbinned OTA, for FLUX_MAX
ZP = 25.93  # mag for 1 ADU/s in the total flux
FWHM = 1.1  # arcsec -> 4" aperture


def ota_header(ota, scale=SCALE):
    """A TAN header of OTA ``ota`` of the 3 x 3 test mosaic (OTA 33 in the centre, no gaps)."""
    col, row = ota // 10 - 3, ota % 10 - 3
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, NPIX, NPIX
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRVAL1"], h["CRVAL2"] = CENTER
    h["CRPIX1"], h["CRPIX2"] = (NPIX + 1) / 2 - col * NPIX, (NPIX + 1) / 2 - row * NPIX
    h["CD1_1"], h["CD2_2"] = -scale / 3600.0, scale / 3600.0
    h["CD1_2"] = h["CD2_1"] = 0.0
    return h


HEADERS = {ota: ota_header(ota) for ota in OTAS}


def enclosed_energy(radius_arcsec, fwhm=FWHM):
    """Gaussian PSF flux fraction within ``radius_arcsec``."""
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return 1.0 - math.exp(-0.5 * (radius_arcsec / sigma) ** 2)


def true_zp(aperture=4.0, zp=ZP):
    """The zero point (1 s) of the ``aperture`` magnitudes."""
    return zp + 2.5 * math.log10(enclosed_energy(aperture / 2.0))


def synthetic_field(*, seed, n=400, filtername="odi_g", catalog="sdss", c0=0.0, c1=0.16, exptime=60.0,
                    zp=ZP, delta=None, n_saturated=0, n_bad_ref=0, n_flagged=0, otas=OTAS):
    """A ``CAT.ODI`` table and a reference table of ``n`` matched stars (plus unmatched extras) on ``otas``.

    ``m_odi = m_ref - (c0 + c1 * colour)`` with the colour of ``colour_term(catalog, filtername)``; the
    instrumental total magnitude is ``m_odi - zp - delta(ra, dec) - 2.5 log10(exptime)``. Saturated stars
    are measured 0.01 mag too faint, stars with bad reference photometry have 0.3 mag reference errors.
    """
    rng = np.random.default_rng(seed)
    total = n + n_saturated + n_bad_ref + n_flagged
    ota = rng.choice(otas, total)
    x, y = rng.uniform(1, NPIX, total), rng.uniform(1, NPIX, total)
    ra, dec = np.empty(total), np.empty(total)
    for o in otas:
        on = ota == o
        ra[on], dec[on] = header_wcs(ota_header(o)).all_pix2world(x[on], y[on], 1)
    true = {"r": rng.uniform(15.0, 21.0, total)}
    true["r"][n:n + n_saturated] = rng.uniform(10.0, 12.0, n_saturated)
    true["g"] = true["r"] + rng.uniform(0.2, 1.4, total)
    true["u"] = true["g"] + rng.uniform(0.8, 1.8, total)
    true["i"] = true["r"] - rng.uniform(0.05, 0.6, total)
    true["z"] = true["i"] - rng.uniform(0.0, 0.4, total)
    band = reference_band(filtername)
    term = colour_term(catalog, filtername)
    colour = true[term.bands[0]] - true[term.bands[1]] if term.applied else 0.0
    m_odi = true[band] - (c0 + c1 * colour)
    offset = delta(ra, dec) if delta is not None else 0.0
    m_tot = m_odi - zp - offset - 2.5 * math.log10(exptime)

    ref = Table()
    ref["ra"] = ra + rng.normal(0, 0.15, total) / 3600.0 / math.cos(math.radians(CENTER[1]))
    ref["dec"] = dec + rng.normal(0, 0.15, total) / 3600.0
    for b in "ugriz":
        err = np.hypot(0.003, 0.01 * 10 ** (0.4 * (true[b] - 20.0)))
        err[n + n_saturated:n + n_saturated + n_bad_ref] = 0.3
        ref[f"mag_{b}"] = true[b] + rng.normal(0, 1, total) * err
        ref[f"err_{b}"] = err
    if catalog == "panstarrs":
        ref["mag_u"] = ref["err_u"] = np.full(total, np.nan)

    cat = Table()
    cat["RA"], cat["DEC"], cat["X"], cat["Y"], cat["OTA"] = ra, dec, x, y, ota.astype(np.int16)
    cat["FWHM_WORLD"] = FWHM * (1 + rng.normal(0, 0.03, total))
    cat["BACKGROUND"] = np.full(total, 800.0)
    cat["FLAGS"] = np.zeros(total, np.int16)
    cat["FLAGS"][total - n_flagged:] = 4
    odi_err = np.hypot(0.002, 0.006 * 10 ** (0.4 * (m_odi - 19.5)))
    noise = rng.normal(0, 1, total) * odi_err
    bias = np.zeros(total)
    bias[n:n + n_saturated] = 0.01
    cat["MAG_AUTO"], cat["MAGERR_AUTO"] = m_tot + noise, odi_err
    for d in APERTURE_DIAMETERS:
        ap = f"D{int(round(d * 10))}"
        cat[f"MAG_{ap}"] = m_tot - 2.5 * math.log10(enclosed_energy(d / 2.0)) + noise + bias
        cat[f"MAGERR_{ap}"] = odi_err
    sigma_px = FWHM / 2.3548 / REAL_SCALE
    cat["FLUX_MAX"] = 10 ** (-0.4 * m_tot) / (2 * math.pi * sigma_px**2)
    extra_ref = ref[rng.choice(total, total // 5)]  # unmatched reference stars elsewhere
    extra_ref["ra"] += 0.5
    extra_odi = cat[rng.choice(total, total // 5)]  # sources without a reference star
    extra_odi["DEC"] += 0.5
    return vstack([cat, extra_odi]), vstack([ref, extra_ref])


def test_reference_band_is_the_closest_sdss_band():
    assert [reference_band(f) for f in ("odi_u", "odi_g", "odi_r", "odi_i", "odi_z")] == list("ugriz")
    with pytest.raises(ValueError):
        reference_band("odi_NB659")


def test_colour_terms_per_catalogue_from_configs():
    g = colour_term("sdss", "odi_g")
    assert (g.bands, g.c0, g.c1, g.label) == (("g", "r"), 0.0, 0.16, "sdss_g - sdss_r")
    z = colour_term("panstarrs", "odi_z")
    assert (z.bands, z.c0, z.c1) == (("i", "z"), 0.0113, -0.0424)
    none = colour_term("sdss", "odi_r")
    assert not none.applied and none.correction(Table({"mag_g": [18.0]})).tolist() == [0.0]
    assert not colour_term("gaia", "odi_g").applied


@pytest.mark.parametrize("fwhm, diameter", [(0.5, 2.0), (0.66, 2.0), (0.7, 3.0), (0.99, 3.0), (1.0, 4.0),
                                            (1.1, 4.0), (1.4, 5.0), (3.5, 12.0), (5.0, 12.0)])
def test_aperture_is_the_smallest_larger_than_three_fwhm(fwhm, diameter):
    assert choose_aperture(fwhm) == diameter


def test_zero_point_recovered_with_honest_error():
    pulls = []
    for seed in range(20):
        cat, ref = synthetic_field(seed=seed, n=150)
        res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.2)
        assert res.ok and res.aperture == 4.0 and res.mag_column == "ODI_MAG_D40"
        assert abs(res.zp - true_zp()) < 0.01
        pulls.append((res.zp - true_zp()) / res.zp_err)
    rms = float(np.sqrt(np.mean(np.square(pulls))))
    assert 0.7 <= rms <= 1.3, rms


def test_saturated_large_error_and_flagged_stars_are_not_used():
    cat, ref = synthetic_field(seed=3, n=300, n_saturated=30, n_bad_ref=30, n_flagged=20)
    res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0)
    calib = res.photcalib
    saturated = calib["ODI_FLUX_MAX"] + calib["ODI_BACKGROUND"] >= 53000
    bad_ref = calib["SDSS_ERR_G"] > 0.2
    assert saturated.sum() == 30 and bad_ref.sum() == 30
    assert not calib["USED4CALIB"][saturated | bad_ref].any()
    assert len(calib) == len(res.photref) == 360  # the flagged sources are not matched
    assert abs(res.zp - true_zp()) < 0.005
    assert res.n_used == calib["USED4CALIB"].sum() <= res.n_raw < 300
    # the cuts, not the clipping, reject them
    loose = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0, saturation=np.inf, error_cut=1.0)
    assert loose.photcalib["USED4CALIB"][saturated].sum() > 20 and loose.photcalib["USED4CALIB"][bad_ref].any()


def test_photcalib_table_is_exptime_and_colour_corrected():
    cat, ref = synthetic_field(seed=5, n=200)
    res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0)
    raw, calib = res.photref, res.photcalib
    colour = raw["SDSS_MAG_G"] - raw["SDSS_MAG_R"]
    assert np.allclose(calib["SDSS_MAG_G"], raw["SDSS_MAG_G"] - 0.16 * colour)
    assert np.allclose(calib["ODI_MAG_D20"] - raw["ODI_MAG_D20"], 2.5 * math.log10(60.0))
    assert np.allclose(calib["ZP"], calib["SDSS_MAG_G"] - calib["ODI_MAG_D40"])
    assert calib.meta["MAG0_MAG"] == "ODI_MAG_D40" and calib.meta["PHOTFILT"] == "g"


@pytest.mark.parametrize("catalog, filtername, c0, c1", [("sdss", "odi_z", 0.0, -0.1277),
                                                         ("panstarrs", "odi_g", 0.0336, -0.0359),
                                                         ("panstarrs", "odi_z", 0.0113, -0.0424)])
def test_colour_terms_applied_for_every_catalogue(catalog, filtername, c0, c1):
    cat, ref = synthetic_field(seed=11, n=400, filtername=filtername, catalog=catalog, c0=c0, c1=c1)
    res = photcalib(cat, ref, filtername=filtername, exptime=60.0, airmass=1.0, catalog_name=catalog)
    assert res.ok and abs(res.zp - true_zp()) < 0.004
    keys = photometry_keywords(res, skylevel_adu=1000.0, pixel_scale_arcsec=REAL_SCALE, gain=1.3)
    assert keys["MAGZ_CT"][0] and keys["MAGZ_CTC"][0] == c1 and keys["MAGZ_CT0"][0] == c0
    assert keys["PHOTMCAT"][0] == catalog
    # against a catalogue without a term, each star's ZP differs by exactly the term, and the scatter is larger
    plain = photcalib(cat, ref, filtername=filtername, exptime=60.0, airmass=1.0, catalog_name="other")
    b1, b2 = (f"REF_MAG_{b.upper()}" for b in res.colour.bands)
    colour = plain.photref[b1] - plain.photref[b2]
    assert np.allclose(plain.photcalib["ZP"] - res.photcalib["ZP"], c0 + c1 * colour, equal_nan=True)
    assert plain.zp_std > res.zp_std


def test_too_few_stars_no_match_or_band_give_failure_keywords():
    cat, ref = synthetic_field(seed=2, n=4)
    res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0)
    assert not res.ok and "only 4 usable" in res.reason
    keys = photometry_keywords(res, skylevel_adu=1000.0, pixel_scale_arcsec=REAL_SCALE, gain=1.3)
    assert keys["PHOTZP"][0] == keys["PHOTZP_X"][0] == keys["MAGZERO"][0] == keys["SKYMAG"][0] == -99
    assert (keys["PHOTZPN0"][0], keys["PHOTZP_N"][0], keys["FLXSCALE"][0]) == (4, -1, 1.0)

    far = ref.copy()
    far["dec"] += 1.0
    res = photcalib(cat, far, filtername="odi_g", exptime=60.0, airmass=1.0, match_radius_arcsec=3.0)
    assert not res.ok and res.reason == "no source within 3 arcsec of a sdss star"

    cat, ref = synthetic_field(seed=2, n=50, filtername="odi_z")
    ref["mag_z"] = np.nan
    res = photcalib(cat, ref, filtername="odi_z", exptime=60.0, airmass=1.0)
    assert not res.ok and "has no z magnitudes" in res.reason

    keys = failed_keywords("no valid WCS", filtername="odi_r")
    assert keys["PHOTNOTE"][0] == "no valid WCS" and keys["PHOTFILT"][0] == "r" and keys["MAGZREF"][0] == 26.1
    assert keys["PHOTZPN0"][0] == keys["PHOTZP_N"][0] == -1 and keys["PHOTZPER"][0] == -99


def test_keywords_with_the_real_pixel_scale():
    cat, ref = synthetic_field(seed=8, n=300, exptime=100.0)
    res = photcalib(cat, ref, filtername="odi_g", exptime=100.0, airmass=1.4)
    header = ota_header(33, scale=REAL_SCALE)
    scale = float(pixel_scale(header_wcs(header), (NPIX + 1) / 2, (NPIX + 1) / 2)[0])
    assert scale == pytest.approx(0.1125, rel=1e-6)
    keys = photometry_keywords(res, skylevel_adu=1000.0, pixel_scale_arcsec=scale, gain=1.3)
    value = {k: v[0] for k, v in keys.items()}
    zpx = res.zp + 5.0
    assert value["PHOTZP_X"] == pytest.approx(zpx)
    # aperture correction: the 4" aperture against the 12" one
    apcorr = 2.5 * math.log10(enclosed_energy(6.0) / enclosed_energy(2.0))
    assert value["PHOTAPCR"] == pytest.approx(apcorr, abs=1e-3)
    # SKYMAG = -2.5 log10(1000 / 0.1125^2) + PHOTZP_X + PHOTAPCR + k (X - 1) (total flux, airmass 1;
    # 0.11"/px would make it 0.0488 mag brighter)
    assert value["SKYMAG"] == pytest.approx(zpx + value["PHOTAPCR"] + 0.4 * 0.20 - 12.24424, abs=1e-4)
    # PHOTDPTH: N = pi (seeing/0.1125)^2 px, noise = sqrt(N (1000 * 1.3 + 8^2)) / 1.3 ADU
    npix = math.pi * (res.seeing / 0.1125) ** 2
    assert value["PHOTDPTH"] == pytest.approx(zpx - 2.5 * math.log10(math.sqrt(npix * 1364.0) / 1.3))
    assert value["SEEING"] == pytest.approx(FWHM, abs=0.01) and value["SEEING_N"] == len(res.photref)
    assert value["FLXSCALE"] == pytest.approx(10 ** (-0.4 * (zpx - 25.0)))
    assert value["MAGZ_AM1"] == pytest.approx(res.zp + 0.4 * 0.20)
    assert value["MAGZREF"] == 26.0 and value["PHOTFILT"] == "g" and value["PHOTNOTE"] == "ok"
    assert value["MAG0SIZE"] == 4.0 and value["MAG0MODE"] == "fwhm_x_3" and value["MAG0_ERR"] == "ODI_ERR_D40"
    assert value["PHOTZPSM"] < value["PHOTZP"] < value["PHOTZPSP"]
    assert value["PHOTZPER"] < value["PHOTZPSD"] / math.sqrt(value["PHOTZP_N"]) * 1.3
    assert 3 < value["ZPRES__N"] <= 100 and value["ZPRES_MN"] <= value["ZPRES_MD"] <= value["ZPRES_MX"]
    assert abs(value["ZPRESMED"] - true_zp()) < 0.01
    assert abs(value["ZPSLP_P1"]) < 3 * value["ZPSLP_E1"] + 1e-3
    assert value["RADZPFIT"] is False
    ext = extension_keywords(res, 33)
    assert ext["FLXSCALE"][0] == value["FLXSCALE"] and abs(ext["PHOTZPOT"][0]) < 0.01
    assert ext["PHOTZPON"][0] == np.sum(res.photcalib["USED4CALIB"] & (res.photcalib["ODI_OTA"] == 33))
    assert extension_keywords(res, 55)["PHOTZPOT"][0] == -99


def test_per_ota_offsets():
    shifted = {23: 0.05, 43: -0.03}

    def delta(ra, dec):
        out = np.zeros(ra.size)
        for ota, dz in shifted.items():
            x, y = header_wcs(HEADERS[ota]).all_world2pix(ra, dec, 1)
            out[(x > 0.5) & (x < NPIX + 0.5) & (y > 0.5) & (y < NPIX + 0.5)] = dz
        return out

    cat, ref = synthetic_field(seed=9, n=900, delta=delta)
    res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0)
    for ota in OTAS:
        offset, n = res.ota_offsets[ota]
        assert n > 30 and offset == pytest.approx(shifted.get(ota, 0.0), abs=0.006)


def test_radial_zp_fit():
    def delta(ra, dec):  # 0.05 mag/degree
        return 0.05 * np.hypot((ra - CENTER[0]) * math.cos(math.radians(CENTER[1])), dec - CENTER[1])

    cat, ref = synthetic_field(seed=4, n=1500, delta=delta)
    res = photcalib(cat, ref, filtername="odi_g", exptime=60.0, airmass=1.0)
    keys = {k: v[0] for k, v in fit_radial_zp(res.photcalib, *CENTER).items()}
    assert keys["RADZPFIT"] is True
    assert keys["RADZP_P1"] == pytest.approx(0.05, abs=3 * keys["RADZP_E1"])
    assert 0 < keys["RADZP_E1"] < 0.02
    empty = fit_radial_zp(res.photcalib, CENTER[0] + 5.0, CENTER[1])
    assert empty["RADZPFIT"][0] is False and empty["RADZP_P1"][0] == -99


def test_saturated_stars_do_not_empty_the_small_error_set():
    """Five small-error stars of which one is saturated: the zero point falls back on every unsaturated star."""
    from astropy.table import Table

    from podisteps.photometry import usable_stars

    n = 30
    calib = Table({"ZP": np.full(n, 25.0), "ZP_ERR": np.r_[np.full(5, 0.01), np.full(n - 5, 0.04)],
                   "ODI_FLUX_MAX": np.r_[60000.0, np.full(n - 1, 1000.0)], "ODI_BACKGROUND": np.full(n, 100.0)})
    chosen = usable_stars(calib, error_cut=0.02, saturation=53000.0, min_stars=5)
    assert chosen.sum() == n - 1 and not chosen[0]
