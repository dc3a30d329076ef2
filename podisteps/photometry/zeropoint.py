"""The zero point of an exposure: filters and colour terms, star selection, :func:`photcalib`.

Conventions are those of :mod:`podisteps.photometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table

from ..astrometry import match_nearest
from ..catalog.detect import APERTURE_DIAMETERS, clean_rows
from ..instrument.filters import filter_entry
from ..instrument.packagedata import load_toml
from ..stats import three_sigma_clip

#: Mean wavelengths of the SDSS bands, Angstrom (docs/photometry.md, 'Reference band and catalogue').
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


#: The restricted zero point: stars within this many mag of the brightest, at most this many, err below.
RESTRICTED_RANGE, RESTRICTED_MAX, RESTRICTED_MAXERR = 3.0, 100, 0.1

#: Error floor of the ZP-magnitude slope fit, mag.
SLOPE_ERROR_FLOOR = 0.005

#: Value of a keyword without a result.
UNDEFINED = -99.0

#: Stars with ``FLUX_MAX + BACKGROUND`` at or above this are saturated, ADU (``sitesetup.photcalib_saturation``).
SATURATION_ADU = 53000.0


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
    entry = filter_entry(filtername)
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


def weighted_line(x: np.ndarray, y: np.ndarray, err: np.ndarray) -> tuple[float, float, float, float]:
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
        ``CAT.ODI`` rows of all OTAs (:data:`podisteps.catalog.detect.CATALOG_COLUMNS`; RA/DEC degrees from a valid
        WCS, ``FWHM_WORLD`` arcsec, magnitudes ``-2.5 log10(ADU)``, 99 where undefined).
    ref : astropy.table.Table
        Reference catalogue with the :data:`podisteps.catalog.refcat.REFCAT_COLUMNS` (``ra``, ``dec``,
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
    if filter_entry(filtername) is None:
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
        result.slope = weighted_line(ref_mag[used], zp, np.hypot(calib["ZP_ERR"][used], SLOPE_ERROR_FLOOR))
    result.ota_offsets = _ota_offsets(calib, candidates, result.zp)
    result.aperture_correction = _aperture_correction(calib, used, result.mag_column)
    return result

