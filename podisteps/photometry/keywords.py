"""Header keywords of the photometric calibration: ``PHOTZP`` and friends, ``SKYMAG``, ``PHOTDPTH``, per-OTA
``FLXSCALE``/``PHOTZPOT``, the keywords of a failed calibration, and the ``-fitradialZP`` fit.
"""

from __future__ import annotations

import math

import numpy as np
from astropy.table import Table

from ..astrometry import tangent_plane
from ..instrument.filters import filter_entry
from .zeropoint import APERTURE_MODE, UNDEFINED, PhotResult, reference_band, weighted_line

#: Read noise assumed for ``PHOTDPTH``, electrons (QuickReduce's 8 e-).
DEPTH_READ_NOISE = 8.0


def nominal_pixel_scale(headers) -> float:
    """Median pixel scale at the WCS reference points, ``3600 sqrt|det CD|`` over OTA headers, arcsec/px.

    The sky of a flat-fielded image has the same ADU per pixel everywhere, in the units of the stars at the
    optical axis: the distortion-free (CD) scale is the one that turns it into a surface brightness.

    Parameters
    ----------
    headers : iterable of astropy.io.fits.Header
        Image-extension headers with ``CD1_1, CD1_2, CD2_1, CD2_2`` (degrees/pixel).
    """
    dets = [h["CD1_1"] * h["CD2_2"] - h["CD1_2"] * h["CD2_1"] for h in headers]
    return float(3600.0 * np.median(np.sqrt(np.abs(dets))))


def sky_magnitude(skylevel_adu: float, zp_frame: float, *, pixel_scale_arcsec: float) -> float:
    """``SKYMAG``: sky surface brightness ``-2.5 log10(SKYLEVEL / scale^2) + zp_frame``, mag/arcsec^2.

    Parameters
    ----------
    skylevel_adu : float
        Sky level, ADU/pixel.
    zp_frame : float
        Zero point for this exposure's ADU, mag (:func:`photometry_keywords` passes the total-flux zero
        point at airmass 1).
    pixel_scale_arcsec : float
        Pixel scale, arcsec/pixel.

    Returns
    -------
    float
        ``UNDEFINED`` for a sky level that is not positive and finite.
    """
    if not (math.isfinite(skylevel_adu) and skylevel_adu > 0):
        return UNDEFINED
    return -2.5 * math.log10(skylevel_adu / pixel_scale_arcsec**2) + zp_frame


def photometric_depth(
    skylevel_adu: float,
    zp_frame: float,
    *,
    seeing_arcsec: float,
    pixel_scale_arcsec: float,
    gain: float,
    read_noise_e: float = DEPTH_READ_NOISE,
) -> float:
    """``PHOTDPTH``: 1-sigma limiting magnitude in a circular aperture of radius = seeing.

    ``-2.5 log10(sqrt(N (SKYLEVEL GAIN + RN^2)) / GAIN) + PHOTZP_X`` with ``N = pi (seeing / scale)^2``
    pixels (QuickReduce's formula for ``GAIN = 1``).

    Parameters
    ----------
    skylevel_adu : float
        Sky level, ADU/pixel.
    zp_frame : float
        ``PHOTZP_X``, mag.
    seeing_arcsec, pixel_scale_arcsec : float
        Seeing FWHM, arcsec, and pixel scale, arcsec/pixel.
    gain, read_noise_e : float
        Gain, e-/ADU, and read noise, e-.

    Returns
    -------
    float
        mag; ``UNDEFINED`` for an invalid sky level or seeing.
    """
    if not (math.isfinite(skylevel_adu) and skylevel_adu > 0 and math.isfinite(seeing_arcsec)):
        return UNDEFINED
    npix = math.pi * (seeing_arcsec / pixel_scale_arcsec) ** 2
    noise_adu = math.sqrt(npix * (skylevel_adu * gain + read_noise_e**2)) / gain
    return -2.5 * math.log10(noise_adu) + zp_frame


def failed_keywords(reason: str, *, filtername: str, catalog_name: str = "sdss", n_raw: int = -1,
                    n_used: int = -1) -> dict:
    """Primary-header keywords of an exposure without a zero point (also the defaults of a success).

    Parameters
    ----------
    reason : str
        Why (``PHOTNOTE``), e.g. ``"no valid WCS"``.
    filtername : str
        ODI filter (for ``PHOTFILT`` and ``MAGZREF``; unknown filters give ``"none"``/-99).
    catalog_name : str, optional
        ``PHOTMCAT``.
    n_raw, n_used : int, optional
        ``PHOTZPN0`` (usable stars before clipping) and ``PHOTZP_N``; -1 when not counted.

    Returns
    -------
    dict
        Keyword -> (value, comment).
    """
    entry = filter_entry(filtername)
    u = UNDEFINED
    return {
        "PHOTNOTE": (reason[:68], "photometric calibration status"),
        "PHOTMCAT": (catalog_name, "photometric reference catalog"),
        "PHOTFILT": (reference_band(filtername) if entry else "none", "reference catalog band"),
        "PHOTZP": (u, "phot. zeropoint corr for exptime"),
        "PHOTZPSD": (u, "zeropoint std.dev."),
        "PHOTZPER": (u, "phot ZP std.err of the median"),
        "PHOTZP_X": (u, "phot zeropoint for this frame"),
        "PHOTZPSP": (u, "phot ZP upper 1sigma limit"),
        "PHOTZPSM": (u, "phot ZP lower 1sigma limit"),
        "PHOTZP_N": (int(n_used), "number stars in clipped distrib."),
        "PHOTZPN0": (int(n_raw), "number of usable ref stars"),
        "MAGZERO": (u, "phot. zeropoint corr for exptime"),
        "MAGZSIG": (u, "phot ZP dispersion"),
        "MAGZERR": (u, "phot ZP uncertainty"),
        "MAG0MODE": ("none", "how was aperture determined"),
        "MAG0SIZE": (u, "aperture diameter [arcsec]"),
        "MAG0_MAG": ("none", "id string for magnitude"),
        "MAG0_ERR": ("none", "id string for mag error"),
        "FLXSCALE": (1.0, "flux scaling factor for ZP=25"),
        "PHOTAPCR": (u, "total-flux ZP minus PHOTZP (aperture corr.)"),
        "SKYMAG": (u, "sky brightness [mag/arcsec^2]"),
        "PHOTDPTH": (u, "1-sigma depth, aperture r=seeing [mag]"),
        "SEEING": (u, "median FWHM of matched stars [arcsec]"),
        "SEEING_N": (0, "stars in the seeing median"),
        "RADZPFIT": (False, "was a radial ZP (ZP=p0 + p1 x r) fit done?"),
        "RADZP_P0": (u, "radial ZP fit, ZP offset at r=0"),
        "RADZP_P1": (u, "radial ZP fit, slope in mag/degree"),
        "RADZP_E0": (u, "radial ZP fit, ZP offset error"),
        "RADZP_E1": (u, "radial ZP fit, slope error"),
        "ZPRESMED": (u, "phot ZP of restricted catalog"),
        "ZPRESSTD": (u, "phot. ZP std.dev. of rest catalog"),
        "ZPRES_SP": (u, "phot ZP upper 1 sigma of rest catalog"),
        "ZPRES_SM": (u, "phot ZP lower 1 sigma of rest catalog"),
        "ZPRES__N": (-1, "phot ZP restricted catalog size"),
        "ZPRES_MD": (u, "phot ZP restricted cat. median ODI mag"),
        "ZPRES_MX": (u, "phot ZP restricted cat. max ODI mag"),
        "ZPRES_MN": (u, "phot ZP restricted cat. min ODI mag"),
        "ZPSLP_P0": (0.0, "phot ZP - magnitude slope - y0"),
        "ZPSLP_P1": (0.0, "phot ZP - magnitude slope - y1"),
        "ZPSLP_E0": (0.0, "phot ZP - magnitude slope - dy0"),
        "ZPSLP_E1": (0.0, "phot ZP - magnitude slope - dy1"),
        "MAGZREF": (float(entry["zp0"]) if entry else u, "reference photometric zeropoint"),
        "MAGZ_AM1": (u, "phot Zeropoint corrected for airmass"),
        "MAGZ_CT": (False, "colour-term correction applied?"),
        "MAGZ_COL": ("", "colour of the colour term"),
        "MAGZ_CTC": (0.0, "colour-term coefficient c1"),
        "MAGZ_CT0": (0.0, "colour-term offset c0"),
    }


def _set(keywords: dict, **values) -> None:
    """Replace the values of existing ``keywords`` entries, keeping their comments."""
    for key, value in values.items():
        keywords[key] = (value, keywords[key][1])


def photometry_keywords(
    result: PhotResult,
    *,
    skylevel_adu: float,
    pixel_scale_arcsec: float,
    gain: float,
    read_noise_e: float = DEPTH_READ_NOISE,
) -> dict:
    """Primary-header keywords of docs/photometry.md for a :func:`photcalib` result (failed or not).

    Parameters
    ----------
    result : PhotResult
        From :func:`photcalib` (holds the filter, exposure time and airmass).
    skylevel_adu : float
        ``SKYLEVEL``, ADU/pixel.
    pixel_scale_arcsec : float
        The pixel scale from the WCS, arcsec/pixel.
    gain, read_noise_e : float
        Gain, e-/ADU, and read noise, e- (for ``PHOTDPTH``).

    Returns
    -------
    dict
        Keyword -> (value, comment); on failure those of :func:`failed_keywords`.
    """
    keywords = failed_keywords(result.reason or "ok", filtername=result.filtername,
                               catalog_name=result.catalog_name, n_raw=result.n_raw, n_used=result.n_used)
    if math.isfinite(result.seeing):
        _set(keywords, SEEING=result.seeing, SEEING_N=result.seeing_n)
    if not result.ok:
        return keywords
    zpx = result.zp_frame
    k = filter_entry(result.filtername)["extinction"]
    apcorr = result.aperture_correction if math.isfinite(result.aperture_correction) else 0.0
    zp_sky = zpx + apcorr + (result.airmass - 1.0) * k
    _set(keywords, PHOTZP=result.zp, PHOTZPSD=result.zp_std, PHOTZPER=result.zp_err, PHOTZP_X=zpx,
         PHOTZPSP=result.zp_p84, PHOTZPSM=result.zp_p16, MAGZERO=result.zp, MAGZSIG=result.zp_std,
         MAGZERR=result.zp_err, MAG0MODE=APERTURE_MODE, MAG0SIZE=result.aperture, MAG0_MAG=result.mag_column,
         MAG0_ERR=result.err_column, FLXSCALE=10.0 ** (-0.4 * (zpx - 25.0)),
         PHOTAPCR=apcorr, SKYMAG=sky_magnitude(skylevel_adu, zp_sky, pixel_scale_arcsec=pixel_scale_arcsec),
         PHOTDPTH=photometric_depth(skylevel_adu, zpx, seeing_arcsec=result.seeing,
                                    pixel_scale_arcsec=pixel_scale_arcsec, gain=gain, read_noise_e=read_noise_e),
         MAGZ_AM1=result.zp + (result.airmass - 1.0) * k,
         MAGZ_CT=result.colour.applied, MAGZ_COL=result.colour.label, MAGZ_CTC=result.colour.c1,
         MAGZ_CT0=result.colour.c0)
    if result.restricted is not None:
        _set(keywords, **dict(zip(("ZPRESMED", "ZPRESSTD", "ZPRES_SP", "ZPRES_SM", "ZPRES__N", "ZPRES_MD",
                                   "ZPRES_MX", "ZPRES_MN"), result.restricted)))
    if result.slope is not None:
        _set(keywords, **dict(zip(("ZPSLP_P0", "ZPSLP_P1", "ZPSLP_E0", "ZPSLP_E1"), result.slope)))
    return keywords


def extension_keywords(result: PhotResult, ota: int) -> dict:
    """Image-extension keywords of OTA ``ota``: ``FLXSCALE`` and its zero-point offset.

    Returns
    -------
    dict
        ``FLXSCALE`` (1.0 without a zero point), ``PHOTZPOT`` (median ZP of the OTA's stars minus
        ``PHOTZP``, mag; -99 without stars) and ``PHOTZPON`` (its number of stars), each (value, comment).
    """
    offset, n = result.ota_offsets.get(ota, (UNDEFINED, 0))
    scale = 10.0 ** (-0.4 * (result.zp_frame - 25.0)) if result.ok else 1.0
    return {"FLXSCALE": (scale, "flux scaling factor for ZP=25"),
            "PHOTZPOT": (offset, "OTA phot ZP minus PHOTZP [mag]"),
            "PHOTZPON": (n, "stars in the OTA phot ZP")}



def fit_radial_zp(calib: Table, center_ra: float, center_dec: float, *, radius_deg: float = 0.3) -> dict:
    """``-fitradialZP``: a weighted linear fit ``ZP - median = p0 + p1 r`` within ``radius_deg`` of a centre.

    As QuickReduce: the median is that of the stars beyond ``radius_deg`` if there are more than 15 (else
    of all); stars more than 0.3 mag from it are ignored; the correction is not applied.

    Parameters
    ----------
    calib : astropy.table.Table
        ``CAT.PHOTCALIB`` of a successful :func:`photcalib` (``ODI_RA``, ``ODI_DEC`` degrees, ``ZP``,
        ``ZP_ERR`` mag); every row with a finite ZP is used.
    center_ra, center_dec : float
        Centre, degrees (QuickReduce: the first OTA's CRVAL shifted by 240" to the South-East).
    radius_deg : float, optional
        Fit radius, degrees.

    Returns
    -------
    dict
        ``RADZPFIT`` (True if fitted), ``RADZP_P0`` (mag), ``RADZP_P1`` (mag/degree), ``RADZP_E0``,
        ``RADZP_E1``, as (value, comment); ``RADZPFIT`` False with -99 values if fewer than 3 stars.
    """
    keywords = {k: v for k, v in failed_keywords("", filtername="").items() if k.startswith("RADZP")}
    if len(calib) == 0:
        return keywords
    zp, err = np.asarray(calib["ZP"], float), np.asarray(calib["ZP_ERR"], float)
    xi, eta = tangent_plane(np.asarray(calib["ODI_RA"], float), np.asarray(calib["ODI_DEC"], float),
                            center_ra, center_dec)
    r = np.hypot(xi, eta) / 3600.0
    good = np.isfinite(zp) & np.isfinite(err) & (err > 0)
    outer = good & (r > radius_deg)
    median = np.median(zp[outer if outer.sum() > 15 else good]) if good.any() else math.nan
    fit = good & (r < radius_deg) & (np.abs(zp - median) < 0.3)
    if fit.sum() < 3:
        return keywords
    p0, p1, e0, e1 = weighted_line(r[fit], zp[fit] - median, err[fit])
    _set(keywords, RADZPFIT=True, RADZP_P0=p0, RADZP_P1=p1, RADZP_E0=e0, RADZP_E1=e1)
    return keywords
