"""The per-OTA correction of a canned WCS as a Bayesian estimate (docs/astrometry.md, 'Per-OTA refinement').

The canned distortion model is the prior: the OTA's correction, a shift at the OTA centre and the four
linear terms (rotation, scale and two shears) about it, is Gaussian with zero mean and the widths of
:func:`canned_prior` (instrument data, ``podisteps/data/astrometry.toml``). The matched stars are the
likelihood: each pair's offset is Gaussian with the pair's own error per axis (reference catalogue's
stated error and centroid error in quadrature). The model is linear in the correction to far better than
a milliarcsecond, so the posterior is Gaussian and its mean, the solution, is a weighted least-squares
solve (:func:`posterior_ota`); a few Gauss-Newton steps absorb the remaining non-linearity and soft-L1
reweighting keeps a mismatched pair from pulling the fit. With a few stars the solution stays near the
canned model, with many it follows the stars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ..instrument.packagedata import load_toml
from .projection import from_tangent_plane, header_wcs, sky_offsets

#: The shipped prior widths (``podisteps/data/<PRIOR_FILE>``, section ``[canned_wcs_prior]``).
PRIOR_FILE = "astrometry.toml"

#: Names of the correction parameters, in order: shift at the OTA centre (arcsec, per axis), then the
#: rotation, scale and shears about the centre (dimensionless).
PARAMETERS = ("shift_x", "shift_y", "rotation", "scale", "shear_1", "shear_2")

#: Gauss-Newton / reweighting passes of :func:`posterior_ota`.
ITERATIONS = 6

#: Soft-L1 scale of the reweighting, in units of a pair's error: a pair 2 errors off keeps 83 % of its weight.
SOFT_L1_SCALE = 3.0


@dataclass(frozen=True)
class CannedPrior:
    """Gaussian prior widths of the per-OTA correction of a canned WCS.

    Attributes
    ----------
    shift_arcsec : float
        Standard deviation of the shift at the OTA centre, per axis, arcsec.
    linear_arcsec : float
        Standard deviation of each linear term (rotation, scale, shear 1, shear 2) as the rms displacement
        per axis it causes over the OTA, arcsec.
    """

    shift_arcsec: float
    linear_arcsec: float

    @property
    def total_arcsec(self) -> float:
        """The prior's rms position error per axis over the OTA, arcsec (shift and four linear terms)."""
        return math.hypot(self.shift_arcsec, 2.0 * self.linear_arcsec)

    def scaled(self, total_arcsec: float) -> CannedPrior:
        """The same shape of prior with an rms position error per axis of ``total_arcsec``."""
        factor = total_arcsec / self.total_arcsec
        return CannedPrior(self.shift_arcsec * factor, self.linear_arcsec * factor)


def canned_prior(header: fits.Header | None = None) -> CannedPrior:
    """The prior of an OTA's canned WCS (:data:`PRIOR_FILE`), scaled to the header's stated error.

    A header with ``ASTRRMS1/2`` (degrees; e.g. the nominal WCS without a canned file says 0.3") gets the
    shipped widths scaled so that their total per axis is ``hypot(ASTRRMS1, ASTRRMS2) / sqrt(2)``.
    """
    data = load_toml(PRIOR_FILE)["canned_wcs_prior"]
    prior = CannedPrior(float(data["shift_arcsec"]), float(data["linear_arcsec"]))
    if header is not None and "ASTRRMS1" in header and "ASTRRMS2" in header:
        return prior.scaled(math.hypot(float(header["ASTRRMS1"]), float(header["ASTRRMS2"])) / math.sqrt(2.0) * 3600.0)
    return prior


def centroid_sigma(fwhm_arcsec, magerr) -> np.ndarray:
    """Centroid error per axis of sources, arcsec: ``sqrt(2) sigma_psf / (S/N)``.

    ``sigma_psf = FWHM / 2.3548`` and ``S/N = 1.0857 / magerr``; the ``sqrt(2)`` is the background-limited
    case (a source-limited centroid is better by that factor).

    Parameters
    ----------
    fwhm_arcsec, magerr : array-like
        ``FWHM_WORLD`` (arcsec) and a magnitude error (mag) of each source, shape ``(n,)``.
    """
    return math.sqrt(2.0) * np.asarray(fwhm_arcsec, float) / 2.3548 * np.asarray(magerr, float) / 1.0857


def _set_wcs(wcs, p, crval0, cd0) -> None:
    """``CRVAL`` moved by ``p[:2]`` (arcsec, in the tangent plane of ``crval0``), ``CD <- (1 + A) CD``."""
    ra, dec = from_tangent_plane(p[0], p[1], *crval0)
    wcs.wcs.crval = [float(ra), float(dec)]
    if len(p) > 2:
        wcs.wcs.cd = np.array([[1.0 + p[2], p[3]], [p[4], 1.0 + p[5]]]) @ cd0
    wcs.wcs.set()


def _offsets(wcs, p, crval0, cd0, x, y, ra, dec) -> np.ndarray:
    """Offsets of the pixels ``(x, y)`` from ``(ra, dec)`` under the header parameters ``p``, shape ``(2n,)``."""
    _set_wcs(wcs, p, crval0, cd0)
    return np.concatenate(sky_offsets(*wcs.all_pix2world(x, y, 1), ra, dec))


#: Finite-difference steps of the header parameters: CRVAL arcsec, then the CD factor (dimensionless).
_STEPS = np.array([0.01, 0.01, 1e-6, 1e-6, 1e-6, 1e-6])


def _jacobian(wcs, p, crval0, cd0, x, y, ra, dec) -> np.ndarray:
    """d(offsets)/d(header parameters) at ``p``, shape ``(2n, len(p))`` (forward differences)."""
    base = _offsets(wcs, p, crval0, cd0, x, y, ra, dec)
    cols = []
    for k in range(len(p)):
        step = np.zeros(len(p))
        step[k] = _STEPS[k]
        cols.append((_offsets(wcs, p + step, crval0, cd0, x, y, ra, dec) - base) / _STEPS[k])
    return np.column_stack(cols)


def _local_basis(wcs, crval0, cd0, npar: int, naxis: tuple[float, float]) -> np.ndarray:
    """``M`` with ``q = M p``: the correction parameters (:data:`PARAMETERS`) of header parameters ``p``.

    The displacement a header change causes on a 5 x 5 grid over the OTA is fitted by a shift at the centre
    and linear terms in the offsets ``(u, v)`` from the centre (arcsec). Shape ``(npar, npar)``.
    """
    gx, gy = (g.ravel() for g in np.meshgrid(np.linspace(1.0, naxis[0], 5), np.linspace(1.0, naxis[1], 5)))
    zero = np.zeros(npar)
    _set_wcs(wcs, zero, crval0, cd0)
    ra, dec = wcs.all_pix2world(gx, gy, 1)
    centre = wcs.all_pix2world([(naxis[0] + 1.0) / 2.0], [(naxis[1] + 1.0) / 2.0], 1)
    u, v = sky_offsets(ra, dec, centre[0][0], centre[1][0])
    one, nil = np.ones_like(u), np.zeros_like(u)
    # dx = sx + (scale + shear1) u + (shear2 - rotation) v; dy = sy + (shear2 + rotation) u + (scale - shear1) v
    design = np.vstack([np.column_stack([one, nil, -v, u, u, v]), np.column_stack([nil, one, u, v, -v, u])])
    grid_jacobian = _jacobian(wcs, zero, crval0, cd0, gx, gy, ra, dec)
    return np.linalg.lstsq(design[:, :npar], grid_jacobian, rcond=None)[0]


def _prior_precision(prior: CannedPrior, npar: int, naxis: tuple[float, float], scale_arcsec: float) -> np.ndarray:
    """Inverse covariance of the first ``npar`` correction parameters (:data:`PARAMETERS`), shape
    ``(npar, npar)``, for an OTA of ``naxis`` pixels of ``scale_arcsec``: a linear term of width ``w`` moves
    the OTA by ``w`` times the rms offset from its centre."""
    rms_offset = scale_arcsec * math.sqrt((naxis[0] ** 2 + naxis[1] ** 2) / 24.0)  # of u and v over the OTA
    linear = prior.linear_arcsec / rms_offset
    sigma = np.r_[prior.shift_arcsec, prior.shift_arcsec, np.full(4, linear)][:npar]
    return np.diag(1.0 / sigma**2)


def posterior_ota(
    header: fits.Header,
    x,
    y,
    ref_ra,
    ref_dec,
    *,
    pair_sigma,
    prior: CannedPrior,
    mode: str = "otashear",
) -> tuple[fits.Header, np.ndarray, bool]:
    """The posterior-mean WCS of one OTA given its canned header (prior) and matched stars (likelihood).

    Parameters
    ----------
    header : astropy.io.fits.Header
        The OTA header after the focal-plane fit (TAN/TPV); ``NAXIS1/2`` give the OTA's extent (else the
        sources' extent). ``PV``, ``CRPIX`` and ``CTYPE`` stay fixed.
    x, y : array-like
        **1-based** pixel positions of the matched sources, shape ``(n,)``.
    ref_ra, ref_dec : array-like
        Matched reference positions, degrees, shape ``(n,)``.
    pair_sigma : array-like
        Error per axis of each pair, arcsec, shape ``(n,)``: reference and centroid error in quadrature.
    prior : CannedPrior
        Widths of the correction (:func:`canned_prior`).
    mode : {'otashear', 'otashift'}
        All six parameters, or the shift alone.

    Returns
    -------
    header : astropy.io.fits.Header
        The solved copy (the input copy without pairs).
    residuals : numpy.ndarray
        Shape ``(n, 2)``, arcsec, with the returned header.
    refined : bool
        Whether there were pairs to fit.
    """
    npar = {"otashift": 2, "otashear": 6}[mode]
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref_ra, ref_dec = np.asarray(ref_ra, float), np.asarray(ref_dec, float)
    wcs = header_wcs(header)
    crval0 = tuple(float(v) for v in wcs.wcs.crval)
    cd0 = wcs.wcs.cd.copy() if wcs.wcs.has_cd() else wcs.pixel_scale_matrix
    out = header.copy()
    if x.size:
        naxis = ((float(header["NAXIS1"]), float(header["NAXIS2"])) if "NAXIS1" in header and "NAXIS2" in header
                 else (float(np.max(x)), float(np.max(y))))
        basis = _local_basis(wcs, crval0, cd0, npar, naxis)
        scale = math.sqrt(abs(np.linalg.det(cd0))) * 3600.0
        precision = basis.T @ _prior_precision(prior, npar, naxis, scale) @ basis
        p = _solve(wcs, crval0, cd0, x, y, ref_ra, ref_dec, np.asarray(pair_sigma, float), precision)
        _set_wcs(wcs, p, crval0, cd0)
        out["CRVAL1"], out["CRVAL2"] = (float(v) for v in wcs.wcs.crval)
        if npar == 6:
            for i in (1, 2):
                for j in (1, 2):
                    out[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1, j - 1])
    ra, dec = header_wcs(out).all_pix2world(x, y, 1)
    return out, np.column_stack(sky_offsets(ra, dec, ref_ra, ref_dec)), bool(x.size)


def _solve(wcs, crval0, cd0, x, y, ref_ra, ref_dec, sigma, precision) -> np.ndarray:
    """Header parameters minimising the weighted squared offsets plus ``p^T precision p`` (Gauss-Newton with
    soft-L1 reweighting of whole pairs)."""
    p = np.zeros(precision.shape[0])
    jac = _jacobian(wcs, p, crval0, cd0, x, y, ref_ra, ref_dec)
    for _ in range(ITERATIONS):
        resid = _offsets(wcs, p, crval0, cd0, x, y, ref_ra, ref_dec)
        z2 = (resid[:x.size] ** 2 + resid[x.size:] ** 2) / (2.0 * sigma**2)
        weight = np.tile(1.0 / np.sqrt(1.0 + z2 / SOFT_L1_SCALE**2) / sigma**2, 2)
        normal = jac.T @ (weight[:, None] * jac) + precision
        p = p - np.linalg.solve(normal, jac.T @ (weight * resid) + precision @ p)
    return p
