"""Photometric calibration of an exposure (QUICKREDUCE_SPEC.md section 4.7, ``podi_photcalib.photcalib``).

The source catalogue (``CAT.ODI`` columns of :mod:`podisteps.detect`) is matched to a reference catalogue
(columns of :mod:`podisteps.refcat`); the zero point is the clipped median of ``m_ref - m_odi`` in the
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

Conventions: magnitudes are ``-2.5 log10(ADU)``; ``zp = m_ref - (m_instrumental + 2.5 log10 EXPTIME)`` is
the zero point for 1 ADU/s; the reference magnitude is colour-corrected as
``m_ref -= c0 + c1 * (m_b1 - m_b2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from .astrometry import match_nearest, tangent_plane
from .detect import APERTURE_DIAMETERS, clean_rows
from .packagedata import load_toml
from .stats import three_sigma_clip

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
]

#: Mean wavelengths of the SDSS bands, Angstrom (spec section 4.7 step 2).
SDSS_WAVELENGTHS = {"u": 3557.0, "g": 4825.0, "r": 6261.0, "i": 7672.0, "z": 9097.0}

#: Reference error cut-offs per catalogue, mag (``sitesetup.photcalib_error_cutoff``); others 0.05.
ERROR_CUTOFFS = {"sdss": 0.02}
DEFAULT_ERROR_CUTOFF = 0.05

#: Column prefix of the reference columns in ``CAT.PHOTREF``/``CAT.PHOTCALIB``; others ``REF``.
CATALOG_PREFIXES = {"sdss": "SDSS", "panstarrs": "IPP", "ucac4": "UCAC", "apass": "APASS"}

#: Magnitudes at or above this value are undefined (detect gives 99).
BAD_MAG_LIMIT = 75.0

#: The largest standard aperture (diameter, arcsec): its magnitude stands for the total flux.
TOTAL_APERTURE = max(APERTURE_DIAMETERS)

#: Aperture selection mode (``MAG0MODE``): diameter larger than 3 x FWHM.
APERTURE_MODE = "fwhm_x_3"

#: Read noise assumed for ``PHOTDPTH``, electrons (QuickReduce's 8 e-).
DEPTH_READ_NOISE = 8.0

#: The restricted zero point: stars within this many mag of the brightest, at most this many, err below.
RESTRICTED_RANGE, RESTRICTED_MAX, RESTRICTED_MAXERR = 3.0, 100, 0.1

#: Error floor of the ZP-magnitude slope fit, mag.
SLOPE_ERROR_FLOOR = 0.005

#: Value of a keyword without a result.
UNDEFINED = -99.0

#: Stars with ``FLUX_MAX + BACKGROUND`` at or above this are saturated, ADU (``sitesetup.photcalib_saturation``).
SATURATION_ADU = 53000.0


def _filter_entry(filtername: str) -> dict | None:
    return load_toml("filters.toml").get(filtername)


def _aperture_id(diameter: float) -> str:
    """``D40`` for a 4" diameter (the ``MAG_D40`` column)."""
    return f"D{int(round(diameter * 10))}"


def reference_band(filtername: str) -> str:
    """The SDSS band whose mean wavelength is closest to that of ODI filter ``filtername``.

    Raises
    ------
    ValueError
        For a filter without a wavelength in ``podisteps/data/filters.toml``.
    """
    entry = _filter_entry(filtername)
    if entry is None:
        raise ValueError(f"filter {filtername!r} is not in podisteps/data/filters.toml")
    return min(SDSS_WAVELENGTHS, key=lambda b: abs(SDSS_WAVELENGTHS[b] - entry["wavelength"]))


@dataclass(frozen=True)
class ColourTerm:
    """``m_ref -= c0 + c1 * (m_b1 - m_b2)`` for one reference catalogue and filter.

    ``bands`` is None when there is no term (``c0 = c1 = 0``).
    """

    catalog: str
    bands: tuple[str, str] | None = None
    c0: float = 0.0
    c1: float = 0.0

    @property
    def applied(self) -> bool:
        """True if there is a term to apply."""
        return self.bands is not None

    @property
    def label(self) -> str:
        """The colour, e.g. ``"sdss_g - sdss_r"`` (``MAGZ_COL``); empty without a term."""
        return f"{self.catalog}_{self.bands[0]} - {self.catalog}_{self.bands[1]}" if self.applied else ""

    def correction(self, ref: Table) -> np.ndarray:
        """``c0 + c1 * colour`` for the rows of a reference table (``mag_<b>`` columns), mag, shape ``(n,)``.

        NaN where a colour band is missing; zeros without a term.
        """
        if not self.applied:
            return np.zeros(len(ref))
        b1, b2 = self.bands
        return self.c0 + self.c1 * (np.asarray(ref[f"mag_{b1}"], float) - np.asarray(ref[f"mag_{b2}"], float))


def colour_term(catalog_name: str, filtername: str) -> ColourTerm:
    """The colour term of ODI filter ``filtername`` against reference catalogue ``catalog_name``.

    From ``podisteps/data/colorterms.toml`` (table ``[<catalog>.<filter>]``); a pair not listed has no term.
    """
    entry = load_toml("colorterms.toml").get(catalog_name, {}).get(filtername)
    if entry is None:
        return ColourTerm(catalog_name)
    b1, b2 = entry["colour"]
    return ColourTerm(catalog_name, (b1, b2), float(entry["c0"]), float(entry["c1"]))


def choose_aperture(fwhm_arcsec_median: float) -> float:
    """The smallest standard aperture diameter larger than 3 x FWHM, else the largest (12"), arcsec."""
    larger = [d for d in APERTURE_DIAMETERS if d > 3.0 * fwhm_arcsec_median]
    return min(larger) if larger else max(APERTURE_DIAMETERS)


@dataclass
class PhotResult:
    """Outcome of :func:`photcalib`.

    Zero points are in mag for 1 ADU/s (``zp_frame`` for the ADU of this exposure). On failure ``ok`` is
    False, ``reason`` says why, the statistics are NaN and the tables hold what was matched.
    """

    filtername: str
    catalog_name: str
    exptime: float
    airmass: float
    ok: bool = False
    reason: str = ""
    ref_band: str = ""
    colour: ColourTerm | None = None
    #: ``CAT.PHOTREF``: matched rows before the exposure-time and colour corrections.
    photref: Table = field(default_factory=Table)
    #: ``CAT.PHOTCALIB``: corrected rows with ``ZP``, ``ZP_ERR`` and ``USED4CALIB``.
    photcalib: Table = field(default_factory=Table)
    aperture: float = math.nan
    zp: float = math.nan
    zp_std: float = math.nan
    zp_err: float = math.nan
    zp_p16: float = math.nan
    zp_p84: float = math.nan
    n_used: int = -1
    n_raw: int = -1
    seeing: float = math.nan
    seeing_n: int = 0
    #: ``PHOTAPCR``: total-flux zero point minus ``zp`` (median ``m_aperture - m_12"`` of the used stars), mag.
    aperture_correction: float = math.nan
    #: ``ZPRES*``: median, std, P84, P16, N, median/max/min ODI magnitude (1 s) of the bright subset.
    restricted: tuple | None = None
    #: ``ZPSLP_*``: ``(p0, p1, e0, e1)`` of ``ZP = p0 + p1 m_ref``.
    slope: tuple | None = None
    #: OTA -> (median ZP of its usable stars minus ``zp``, number of stars); before the clipping, which would
    #: remove the stars of an OTA that is off by more than 3 sigma.
    ota_offsets: dict = field(default_factory=dict)

    @property
    def zp_frame(self) -> float:
        """``PHOTZP_X``: the zero point for this exposure's ADU, ``zp + 2.5 log10(EXPTIME)``, mag."""
        return self.zp + 2.5 * math.log10(self.exptime)

    @property
    def mag_column(self) -> str:
        """``MAG0_MAG``: the ODI magnitude column used, e.g. ``ODI_MAG_D40``."""
        return f"ODI_MAG_{_aperture_id(self.aperture)}" if math.isfinite(self.aperture) else "none"

    @property
    def err_column(self) -> str:
        """``MAG0_ERR``: the ODI magnitude error column used."""
        return self.mag_column.replace("_MAG_", "_ERR_")


def _photref_table(src: Table, ref: Table, prefix: str) -> Table:
    """``CAT.PHOTREF`` rows from matched ``CAT.ODI`` rows ``src`` and reference rows ``ref`` (same length)."""
    out = Table()
    out["ODI_RA"], out["ODI_DEC"] = np.asarray(src["RA"], float), np.asarray(src["DEC"], float)
    out[f"{prefix}_RA"], out[f"{prefix}_DEC"] = np.asarray(ref["ra"], float), np.asarray(ref["dec"], float)
    for band in SDSS_WAVELENGTHS:
        for kind in ("mag", "err"):
            out[f"{prefix}_{kind.upper()}_{band.upper()}"] = np.asarray(ref[f"{kind}_{band}"], float)
    out["ODI_FWHM"] = np.asarray(src["FWHM_WORLD"], float)
    out["ODI_MAG_AUTO"], out["ODI_ERR_AUTO"] = np.asarray(src["MAG_AUTO"], float), np.asarray(src["MAGERR_AUTO"], float)
    for kind, column in (("MAG", "MAG"), ("ERR", "MAGERR")):
        for ap in map(_aperture_id, APERTURE_DIAMETERS):
            out[f"ODI_{kind}_{ap}"] = np.asarray(src[f"{column}_{ap}"], float)
    for name in ("X", "Y", "OTA", "FLUX_MAX", "BACKGROUND"):
        out[f"ODI_{name}"] = src[name]
    return out


def _calibration_table(photref: Table, ref: Table, *, prefix: str, band: str, term: ColourTerm,
                       exptime: float, mag_column: str) -> Table:
    """``CAT.PHOTCALIB``: ODI magnitudes for 1 s, colour-corrected reference magnitude, ``ZP``, ``ZP_ERR``."""
    calib = photref.copy()
    dmag = 2.5 * math.log10(exptime)
    for name in calib.colnames:
        if name.startswith("ODI_MAG_"):
            good = calib[name] < BAD_MAG_LIMIT
            calib[name][good] += dmag
    ref_mag, ref_err = f"{prefix}_MAG_{band.upper()}", f"{prefix}_ERR_{band.upper()}"
    calib[ref_mag] -= term.correction(ref)
    calib["ZP"] = calib[ref_mag] - calib[mag_column]
    calib["ZP_ERR"] = np.hypot(calib[ref_err], calib[mag_column.replace("_MAG_", "_ERR_")])
    calib["USED4CALIB"] = np.zeros(len(calib), bool)
    return calib


def usable_stars(calib: Table, *, error_cut: float, saturation: float = SATURATION_ADU,
                 min_stars: int = 0) -> np.ndarray:
    """Stars eligible for the zero point: unsaturated, with a small total error (all unsaturated ones if fewer
    than ``min_stars`` have it).

    Parameters
    ----------
    calib : astropy.table.Table
        ``CAT.PHOTCALIB`` rows (``ZP``, ``ZP_ERR`` mag, ``ODI_FLUX_MAX``, ``ODI_BACKGROUND`` ADU).
    error_cut : float
        Upper limit of ``ZP_ERR``, mag.
    saturation : float, optional
        Stars with ``FLUX_MAX + BACKGROUND`` at or above this, ADU, are not usable.
    min_stars : int, optional
        Fewest stars below ``error_cut`` before all unsaturated stars are taken.

    Returns
    -------
    numpy.ndarray
        bool, shape ``(len(calib),)``.
    """
    saturated = np.asarray(calib["ODI_FLUX_MAX"] + calib["ODI_BACKGROUND"] >= saturation)
    finite = np.isfinite(calib["ZP"]) & np.isfinite(calib["ZP_ERR"]) & ~saturated
    small = finite & (calib["ZP_ERR"] < error_cut)
    return small if small.sum() >= min_stars else finite


def clipped_stars(zp: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Mask of the ``candidates`` (bool, shape ``(n,)``) whose zero points ``zp`` (mag, shape ``(n,)``) survive
    :func:`podisteps.stats.three_sigma_clip` (a contiguous ZP range)."""
    kept = three_sigma_clip(zp[candidates])
    return candidates & (zp >= kept.min()) & (zp <= kept.max())


def _restricted(odi_mag: np.ndarray, odi_err: np.ndarray, zp: np.ndarray) -> tuple | None:
    """``ZPRES*`` statistics of the <= 100 brightest stars with err < 0.1 within 3 mag of the brightest."""
    good = odi_err < RESTRICTED_MAXERR
    if not good.any():
        return None
    bright = good & (odi_mag < odi_mag[good].min() + RESTRICTED_RANGE)
    idx = np.flatnonzero(bright)[np.argsort(odi_mag[bright])][:RESTRICTED_MAX]
    if idx.size <= 3:
        return None
    z, m = zp[idx], odi_mag[idx]
    p16, med, p84 = np.percentile(z, [16.0, 50.0, 84.0])
    return float(med), float(np.std(z)), float(p84), float(p16), int(idx.size), float(np.median(m)), \
        float(m.max()), float(m.min())


def _weighted_line(x: np.ndarray, y: np.ndarray, err: np.ndarray) -> tuple[float, float, float, float]:
    """Weighted least-squares ``y = p0 + p1 x``: ``(p0, p1, e0, e1)`` (errors from ``err``, unscaled)."""
    (p1, p0), cov = np.polyfit(x, y, 1, w=1.0 / err, cov="unscaled")
    return float(p0), float(p1), float(math.sqrt(cov[1, 1])), float(math.sqrt(cov[0, 0]))


def _aperture_correction(calib: Table, used: np.ndarray, mag_column: str) -> float:
    """Median ``m_aperture - m_total`` (the 12" aperture) of the ``used`` stars with both defined, mag."""
    total = np.asarray(calib[f"ODI_MAG_{_aperture_id(TOTAL_APERTURE)}"], float)
    chosen = np.asarray(calib[mag_column], float)
    good = used & (total < BAD_MAG_LIMIT)
    return float(np.median(chosen[good] - total[good])) if good.any() else math.nan


def _ota_offsets(calib: Table, stars: np.ndarray, zp: float) -> dict[int, tuple[float, int]]:
    """OTA -> (median ZP of its ``stars`` minus ``zp``, number of stars)."""
    otas = np.asarray(calib["ODI_OTA"])
    return {int(o): (float(np.median(calib["ZP"][stars & (otas == o)]) - zp), int(np.sum(stars & (otas == o))))
            for o in np.unique(otas[stars])}


def photcalib(
    odi_cat: Table,
    ref: Table,
    *,
    filtername: str,
    exptime: float,
    airmass: float,
    match_radius_arcsec: float = 2.0,
    catalog_name: str = "sdss",
    error_cut: float | None = None,
    saturation: float = SATURATION_ADU,
    min_stars: int = 5,
) -> PhotResult:
    """Photometric zero point of an exposure from its source catalogue and a reference catalogue.

    Parameters
    ----------
    odi_cat : astropy.table.Table
        ``CAT.ODI`` rows of all OTAs (:data:`podisteps.detect.CATALOG_COLUMNS`; RA/DEC degrees from a valid
        WCS, ``FWHM_WORLD`` arcsec, magnitudes ``-2.5 log10(ADU)``, 99 where undefined).
    ref : astropy.table.Table
        Reference catalogue with the :data:`podisteps.refcat.REFCAT_COLUMNS` (``ra``, ``dec``,
        ``mag_<b>``, ``err_<b>``; NaN where missing).
    filtername : str
        ODI filter (``podisteps/data/filters.toml``), e.g. ``"odi_g"``.
    exptime : float
        Exposure time, s.
    airmass : float
        Airmass of the exposure (kept for ``MAGZ_AM1``).
    match_radius_arcsec : float, optional
        Maximum separation of a match, arcsec.
    catalog_name : str, optional
        Reference catalogue (selects colour terms, error cut-off and column prefix).
    error_cut : float, optional
        Upper limit of ``hypot(ref_err, odi_err)``, mag; default 0.02 for SDSS, else 0.05. All stars are
        used if fewer than ``min_stars`` pass.
    saturation : float, optional
        Stars with ``FLUX_MAX + BACKGROUND`` at or above this, ADU, are not used.
    min_stars : int, optional
        Fewest usable stars for a zero point.

    Returns
    -------
    PhotResult
        ``ok`` False (with ``reason``) for an unknown filter, a reference catalogue without the needed
        bands, no match or too few usable stars.
    """
    result = PhotResult(filtername=filtername, catalog_name=catalog_name, exptime=float(exptime),
                        airmass=float(airmass))
    if _filter_entry(filtername) is None:
        result.reason = f"filter {filtername} has no photometric data"
        return result
    result.ref_band = band = reference_band(filtername)
    result.colour = term = colour_term(catalog_name, filtername)
    needed = dict.fromkeys((band,) + (term.bands or ()))
    missing = [b for b in needed if not np.isfinite(np.asarray(ref[f"mag_{b}"], float)).any()]
    if missing:
        result.reason = f"reference catalogue {catalog_name} has no {'/'.join(missing)} magnitudes"
        return result

    src = odi_cat[clean_rows(odi_cat)]
    usable = ref[np.isfinite(np.asarray(ref[f"mag_{band}"], float))]
    i1, i2, _ = match_nearest(src["RA"], src["DEC"], usable["ra"], usable["dec"],
                              radius_arcsec=match_radius_arcsec)
    if i1.size == 0:
        result.reason = f"no source within {match_radius_arcsec:g} arcsec of a {catalog_name} star"
        return result
    prefix = CATALOG_PREFIXES.get(catalog_name, "REF")
    matched = _photref_table(src[i1], usable[i2], prefix)
    result.seeing, result.seeing_n = float(np.median(matched["ODI_FWHM"])), len(matched)
    result.aperture = choose_aperture(result.seeing)
    valid = np.asarray(matched[result.mag_column] < BAD_MAG_LIMIT) & clean_rows(src[i1],
                                                                                 aperture=_aperture_id(result.aperture))
    result.photref = matched[valid]
    calib = result.photcalib = _calibration_table(result.photref, usable[i2][valid], prefix=prefix, band=band,
                                                  term=term, exptime=exptime, mag_column=result.mag_column)
    calib.meta.update({"PHOTMCAT": catalog_name, "PHOTFILT": band, "MAG0MODE": APERTURE_MODE,
                       "MAG0SIZE": result.aperture, "MAG0_MAG": result.mag_column,
                       "MAG0_ERR": result.err_column, "REFMAG": f"{prefix}_MAG_{band.upper()}"})

    cut = ERROR_CUTOFFS.get(catalog_name, DEFAULT_ERROR_CUTOFF) if error_cut is None else error_cut
    candidates = usable_stars(calib, error_cut=cut, saturation=saturation, min_stars=min_stars)
    result.n_raw = int(candidates.sum())
    if result.n_raw < min_stars:
        result.reason = f"only {result.n_raw} usable {catalog_name} stars (need {min_stars})"
        return result

    zp_all = np.asarray(calib["ZP"], float)
    used = clipped_stars(zp_all, candidates)
    calib["USED4CALIB"] = used
    zp = zp_all[used]
    result.ok = True
    result.n_used = int(used.sum())
    result.zp = float(np.median(zp))
    result.zp_std = float(np.std(zp))
    result.zp_err = float(math.sqrt(math.pi / 2.0) * np.std(zp, ddof=1) / math.sqrt(zp.size))
    result.zp_p16, result.zp_p84 = (float(v) for v in np.percentile(zp, [16.0, 84.0]))
    calib.meta["PHOTZP"] = result.zp

    odi_mag, odi_err = np.asarray(calib[result.mag_column], float), np.asarray(calib[result.err_column], float)
    result.restricted = _restricted(odi_mag[candidates], odi_err[candidates], zp_all[candidates])
    ref_mag = np.asarray(calib[calib.meta["REFMAG"]], float)
    if result.n_used > 2:
        result.slope = _weighted_line(ref_mag[used], zp, np.hypot(calib["ZP_ERR"][used], SLOPE_ERROR_FLOOR))
    result.ota_offsets = _ota_offsets(calib, candidates, result.zp)
    result.aperture_correction = _aperture_correction(calib, used, result.mag_column)
    return result


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
    entry = _filter_entry(filtername)
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
    """Primary-header keywords of spec section 4.7 for a :func:`photcalib` result (failed or not).

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
    k = _filter_entry(result.filtername)["extinction"]
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
    p0, p1, e0, e1 = _weighted_line(r[fit], zp[fit] - median, err[fit])
    _set(keywords, RADZPFIT=True, RADZP_P0=p0, RADZP_P1=p1, RADZP_E0=e0, RADZP_E1=e1)
    return keywords
