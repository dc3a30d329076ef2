"""The whole exposure (:func:`solve_focal_plane`) and the ``-nonsidereal`` offsets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .matching import match_nearest, reference_tree, thin_pairs, wcs_quality
from .pointing import PointingSolution, find_pointing
from .posterior import canned_prior, posterior_ota
from .projection import odi2wcs, tangent_plane
from .refinement import MIN_MATCHES, apply_shift_rotation, fit_shift_rotation, refine_ota, shift_rotation_model


def nonsidereal_offsets(dra: float, ddec: float, ref_mjd: float, mjd: float, dec: float) -> dict:
    """The ``-nonsidereal`` correction of ``CRVAL`` (docs/reduction-steps.md, 'Exposure-wide steps').

    Parameters
    ----------
    dra, ddec : float
        Rates ``dRA cos(Dec)`` and ``dDec``, arcsec/hour.
    ref_mjd : float
        Reference MJD (given, or the ``MJD-OBS`` of a reference frame).
    mjd : float
        The exposure's ``MJD-OBS``.
    dec : float
        ``CRVAL2``, degrees (the ``cos`` of the RA term).

    Returns
    -------
    dict
        ``dcrval1``, ``dcrval2``: degrees to **add** to ``CRVAL1``/``CRVAL2``
        (``-dra dt / 3600 / cos(dec)``, ``-ddec dt / 3600``); ``dt_hours``; and the header values
        ``NSIDDRA``/``NSIDDDEC`` (the same offsets, degrees) and ``NSIDPMRA``, ``NSIDPMDE``, ``NSIDBASE``,
        ``NSIDDMJD``, ``NSID_DHR``.
    """
    dt_mjd = float(mjd) - float(ref_mjd)
    dt_h = dt_mjd * 24.0
    d1 = -dra * dt_h / 3600.0 / math.cos(math.radians(dec))
    d2 = -ddec * dt_h / 3600.0
    return {"dcrval1": d1, "dcrval2": d2, "dt_hours": dt_h, "NSIDDRA": d1, "NSIDDDEC": d2,
            "NSIDPMRA": float(dra), "NSIDPMDE": float(ddec), "NSIDBASE": float(ref_mjd),
            "NSIDDMJD": dt_mjd, "NSID_DHR": dt_h}


#: Smallest centroid error per axis of a source, arcsec (the canned distortion's higher-order residuals).
MIN_SOURCE_SIGMA_ARCSEC = 0.01

#: Modes of :func:`solve_focal_plane`, in the order of the steps they include (QuickReduce ``fixwcs_mode``).
MODES = ("shift", "rotation", "otashift", "otashear")


@dataclass
class FocalPlaneSolution:
    """Result of :func:`solve_focal_plane`.

    Attributes
    ----------
    valid : bool
        A solution was found (``WCSCAL``); otherwise ``headers`` are the input headers.
    headers : dict
        OTA -> solved header (copies).
    pointing : PointingSolution
        The histogram search.
    rotation_fit : dict or None
        :func:`fit_shift_rotation` over the focal plane (``WCS2_*``), None if not run.
    refined : dict
        OTA -> whether :func:`refine_ota` changed its header.
    matches : dict
        OTA -> ``(source index, reference index)`` arrays of the final unique matches within 2".
    radec : dict
        OTA -> ``(ra, dec)`` of all its sources with the returned headers, degrees.
    quality : dict
        :func:`wcs_quality` of all final matches.
    quality_by_ota : dict
        OTA -> :func:`wcs_quality` of its matches.
    """

    valid: bool
    headers: dict
    pointing: PointingSolution
    rotation_fit: dict | None
    refined: dict
    matches: dict
    radec: dict
    quality: dict
    quality_by_ota: dict


def _radec(headers, sources):
    return {ota: odi2wcs(headers, ota, src[0], src[1]) for ota, src in sources.items()}


def _match_by_ota(radec, tree, radius):
    return {ota: match_nearest(ra, dec, None, None, radius_arcsec=radius, tree=tree)[:2]
            for ota, (ra, dec) in radec.items()}


def _star_sigma(residuals) -> float:
    """Error per axis of one pair, arcsec: 1.4826 MAD of the residuals (0.1 with fewer than 5 pairs)."""
    r = np.asarray(residuals, float).ravel()
    return float(1.4826 * np.median(np.abs(r - np.median(r)))) if r.size >= 10 else 0.1


def _pair_sigma(ref_sigma, src_sigma, i1, i2, star_sigma: float) -> np.ndarray:
    """Error per axis of each pair, arcsec, shape like ``i1``: the reference star's stated error
    (``ref_sigma[i2]``; NaN where unknown: their median; the focal-plane scatter ``star_sigma`` without
    stated errors) and the source's centroid error (``src_sigma[i1]``, None: none known) in quadrature, the
    latter at least :data:`MIN_SOURCE_SIGMA_ARCSEC`."""
    if ref_sigma is None or not np.isfinite(ref_sigma).any():
        ref = np.full(i1.size, star_sigma)
    else:
        ref = np.where(np.isfinite(ref_sigma[i2]), ref_sigma[i2], float(np.nanmedian(ref_sigma)))
    src = MIN_SOURCE_SIGMA_ARCSEC if src_sigma is None else np.fmax(src_sigma[i1], MIN_SOURCE_SIGMA_ARCSEC)
    return np.hypot(ref, src)


def _refine_unregularised(header, x, y, ref_ra, ref_dec, *, mode: str, star_sigma: float, pair_sigma):
    """QuickReduce's :func:`refine_ota` of one OTA; ``otashear`` only where its 4 extra parameters pay off.

    ``CRVAL`` alone is fitted first; ``CD`` too (with at least ``MIN_MATCHES['otashear']`` pairs) is kept
    only if it lowers the Bayesian information criterion ``m ln(RSS) + k ln(m)`` of the ``m = 2n`` residuals:
    with a few dozen noisy pairs a free ``CD`` mostly fits the noise at the OTA's edges.
    """
    def fit(fit_mode):
        return refine_ota(header, x, y, ref_ra, ref_dec, mode=fit_mode, star_sigma=star_sigma, pair_sigma=pair_sigma)

    shift = fit("otashift")
    if mode != "otashear" or x.size < MIN_MATCHES["otashear"]:
        return shift
    shear = fit("otashear")
    m = 2 * x.size
    rss_shift, rss_shear = (float(np.sum(np.square(r[1]))) for r in (shift, shear))
    return shear if m * math.log(max(rss_shear, 1e-30) / max(rss_shift, 1e-30)) + 4 * math.log(m) < 0 else shift


def _refine_otas(headers, sources, refs, tree, *, mode: str, star_sigma: float, prior: bool, ref_sigma=None):
    """Every OTA with its unique matches within 3", each pair weighted by its error (:func:`_pair_sigma`):
    the posterior mean under the canned model's prior (:func:`posterior_ota`), or without ``prior``
    QuickReduce's fit (:func:`_refine_unregularised`). Returns headers and flags."""
    out, refined = dict(headers), {}
    for ota, pairs in _match_by_ota(_radec(headers, sources), tree, 3.0).items():
        i1, i2 = thin_pairs(*pairs)
        src = sources[ota]
        sigma = _pair_sigma(ref_sigma, src[3] if len(src) > 3 else None, i1, i2, star_sigma)
        args = (headers[ota], src[0][i1], src[1][i1], refs[0][i2], refs[1][i2])
        if prior:
            out[ota], _, refined[ota] = posterior_ota(*args, pair_sigma=sigma, prior=canned_prior(headers[ota]),
                                                      mode=mode)
        else:
            out[ota], _, refined[ota] = _refine_unregularised(*args, mode=mode, star_sigma=star_sigma,
                                                              pair_sigma=sigma)
    return out, refined


def solve_focal_plane(
    headers_by_ota: dict,
    sources_by_ota: dict,
    refs,
    *,
    mode: str = "otashear",
    center: tuple[float, float] | None = None,
    max_radius_arcmin=(2.0, 5.0, 8.0, 12.0, 20.0),
    rotations_deg=None,
    min_contrast: float = 3.0,
    max_sources: int = 250,
    prior: bool = True,
    ref_sigma_arcsec=None,
) -> FocalPlaneSolution:
    """Astrometric calibration of an exposure (ccmatch): search, focal-plane fit, per-OTA refinement.

    Parameters
    ----------
    headers_by_ota : dict
        OTA -> header with the current (canned) WCS; all share the optical axis as ``CRVAL``.
    sources_by_ota : dict
        OTA -> ``(x, y, mag)`` or ``(x, y, mag, sigma)`` of the selected sources, **1-based** pixels
        (``CAT.ODI`` ``X``, ``Y``, ``MAG_AUTO``) and centroid errors per axis in arcsec
        (:func:`podisteps.astrometry.centroid_sigma`), shape ``(n,)`` each.
    refs : tuple of array-like
        ``(ra, dec)`` of the reference stars at the exposure epoch, degrees.
    mode : {'shift', 'rotation', 'otashift', 'otashear'}
        Last step run: the search only, + the focal-plane shift/rotation fit (unique matches within 5",
        more than 10 needed), + per-OTA ``CRVAL`` (matches within 3"), or ``CRVAL`` and ``CD``.
    center : tuple of float, optional
        Optical axis, degrees; default the first header's ``CRVAL``.
    max_radius_arcmin, rotations_deg, min_contrast, max_sources
        Passed to :func:`find_pointing`.
    prior : bool, optional
        Solve each OTA as the posterior mean with its canned model as a Gaussian prior
        (:func:`podisteps.astrometry.posterior_ota`, :func:`podisteps.astrometry.canned_prior`): every OTA
        with a pair is solved, and moves only as far as its stars outweigh the prior. False:
        QuickReduce's unregularised fit (5 pairs for ``CRVAL``; ``CD`` with 10, where that lowers the BIC
        of the residuals).
    ref_sigma_arcsec : array-like, optional
        The reference stars' stated position errors per axis, arcsec, shape like ``refs[0]`` (NaN where
        unknown): each pair's error is this and its centroid error in quadrature (:func:`_pair_sigma`).
        None: the focal-plane fit's scatter stands in for the reference errors.

    Returns
    -------
    FocalPlaneSolution
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    first = headers_by_ota[next(iter(headers_by_ota))]
    center = center or (float(first["CRVAL1"]), float(first["CRVAL2"]))
    ref_ra, ref_dec = np.asarray(refs[0], float), np.asarray(refs[1], float)
    tree = reference_tree(ref_ra, ref_dec)
    sources = {ota: tuple(np.asarray(v, float) for v in src) for ota, src in sources_by_ota.items()
               if ota in headers_by_ota}
    radec = _radec(headers_by_ota, sources)
    src_ra, src_dec, src_mag = (np.concatenate([np.zeros(0)] + cols) for cols in (
        [radec[o][0] for o in sources], [radec[o][1] for o in sources], [sources[o][2] for o in sources]))
    pointing = find_pointing((src_ra, src_dec, src_mag), (ref_ra, ref_dec), center=center,
                             max_radius_arcmin=max_radius_arcmin, rotations_deg=rotations_deg,
                             min_contrast=min_contrast, max_sources=max_sources, ref_tree=tree)
    headers = {ota: hdr.copy() for ota, hdr in headers_by_ota.items()}
    rotation_fit, refined = None, dict.fromkeys(sources, False)
    if pointing.success:
        angle, shift = pointing.angle, pointing.shift
        if mode != "shift":
            xi, eta = tangent_plane(src_ra, src_dec, *center)
            i1, i2 = thin_pairs(*match_nearest(*shift_rotation_model(xi, eta, angle, shift, center), None, None,
                                          radius_arcsec=5.0, tree=tree)[:2])
            if i1.size > 10:
                rotation_fit = fit_shift_rotation(src_ra[i1], src_dec[i1], ref_ra[i2], ref_dec[i2], center=center,
                                                  start=(angle, *shift))
                angle, shift = rotation_fit["angle"], rotation_fit["shift"]
        headers = {ota: apply_shift_rotation(hdr, angle=angle, shift=shift, center=center)
                   for ota, hdr in headers_by_ota.items()}
        if mode in ("otashift", "otashear"):
            sigma = _star_sigma(rotation_fit["residuals"] if rotation_fit else [])
            ref_sigma = None if ref_sigma_arcsec is None else np.asarray(ref_sigma_arcsec, float)
            headers, done = _refine_otas(headers, sources, (ref_ra, ref_dec), tree, mode=mode, star_sigma=sigma,
                                         prior=prior, ref_sigma=ref_sigma)
            refined.update(done)
        radec = _radec(headers, sources)
        matches = _match_by_ota(radec, tree, 2.0)
    else:
        matches = {ota: (np.zeros(0, int), np.zeros(0, int)) for ota in sources}
    pairs = {ota: (radec[ota][0][i1], radec[ota][1][i1], ref_ra[i2], ref_dec[i2]) for ota, (i1, i2) in matches.items()}
    quality = wcs_quality(*(np.concatenate([np.zeros(0)] + [p[k] for p in pairs.values()]) for k in range(4)))
    return FocalPlaneSolution(bool(pointing.success), headers, pointing, rotation_fit, refined, matches, radec,
                              quality, {ota: wcs_quality(*p) for ota, p in pairs.items()})
