"""Astrometric calibration across the focal plane (QUICKREDUCE_SPEC.md sections 4.6 and 4.8; ``-fixwcs``).

The steps follow QuickReduce's ``dev_ccmatch``, with the changes its section 8.2 recommends:

1. :func:`find_pointing` - the robust initial guess. Sources and reference stars are projected onto the
   tangent plane at the optical axis (the common ``CRVAL`` of all OTAs). For each trial rotation of the
   sources about the axis, every source -> reference offset within the search radius goes into a 2-D
   histogram; its peak is the candidate shift. The rotation with the highest peak wins; its contrast
   against the rotations more than 40' away measures how unique the solution is (QuickReduce's
   ``WCS_QUAL``). A solution is accepted only if it also has enough matches and chance cannot explain
   them (:func:`match_significance`, the trials of the whole search included): blank or sparse fields and
   wrong catalogues fail there. Crowded fields stay fast: the histogram takes the brightest sources near
   the axis, up to a fixed number of pairs.
2. :func:`fit_shift_rotation` - least squares on (angle, shift) with robust loss, then
   :func:`apply_shift_rotation` writes it into every OTA header (``CD <- R CD``, ``CRVAL`` moved).
3. :func:`refine_ota` - per-OTA least squares of ``CRVAL`` (``otashift``) or ``CRVAL`` and ``CD``
   (``otashear``) with ``scipy.optimize.least_squares(loss='soft_l1')``; the TPV ``PV`` terms stay fixed.
   The fit is regularised towards the canned model by its stated error (:func:`prior_error`), so an
   OTA with a few stars moves only as far as they outweigh the model.
4. :func:`wcs_quality` - the ``WCS_RMSA`` ... ``WCSCRMS`` keywords.

:func:`solve_focal_plane` chains the steps for a whole exposure.

Conventions
-----------
- Pixel positions given to and returned by this module are **1-based FITS pixels** (SExtractor's and
  ``CAT.ODI``'s ``X``, ``Y``) unless a name says ``0-based``.
- Sky offsets are ``(dalpha cos(delta), ddelta)`` in arcsec, measured exactly as gnomonic coordinates in
  the tangent plane of the second position (valid at the poles and across RA = 0).
- The shift of a solution is the position of the new optical axis in the tangent plane of the old one,
  arcsec (``~ (dRA cos(Dec), dDec)`` of the axis); the rotation is counter-clockwise on the sky as seen
  on the detector (East +x, North +y), degrees, the same sense as ``CD <- R(angle) CD``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from scipy.optimize import least_squares
from scipy.spatial import cKDTree
from scipy.stats import poisson

from .stats import three_sigma_clip

__all__ = [
    "header_wcs",
    "tangent_plane",
    "from_tangent_plane",
    "sky_offsets",
    "pixel_scale",
    "reference_tree",
    "match_nearest",
    "unit_vectors",
    "PointingSolution",
    "match_significance",
    "find_pointing",
    "fit_shift_rotation",
    "apply_shift_rotation",
    "prior_error",
    "refine_ota",
    "wcs_quality",
    "odi2wcs",
    "wcs2odi",
    "nonsidereal_offsets",
    "FocalPlaneSolution",
    "solve_focal_plane",
]

ARCSEC = 1.0 / 3600.0

#: Minimum matches per OTA for the refinement modes (QuickReduce: more than 4 / more than 9).
MIN_MATCHES = {"otashift": 5, "otashear": 10}

#: Minimum matches per OTA for a ``CD`` refinement regularised by the canned model's prior: with 10-20
#: pairs of faint stars (centroid and reference errors of 50-100 mas) a free ``CD`` fits their noise, and
#: the BIC does not always catch it (a full-size catalogue-level sweep of 10 sparse exposures: two OTAs
#: with 8 or more matches at a p90 error above 0.05" with 10, none with 20).
MIN_PRIOR_SHEAR_MATCHES = 20

#: Position error per axis of a canned distortion model without ``ASTRRMS1/2`` cards, arcsec
#: (:func:`prior_error`; the simulator's perturbed models are 32-48 mas rms in two dimensions).
DEFAULT_PRIOR_ARCSEC = 0.035

#: Pairs entering one least-squares fit, at most (more only cost time: an even subset is used).
MAX_FIT_PAIRS = 2000


# --------------------------------------------------------------------------------------------------------
# geometry helpers


def header_wcs(header: fits.Header) -> WCS:
    """An astropy celestial WCS of an OTA header (``FITSFixedWarning`` messages about date cards are silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2, relax=True)


def tangent_plane(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection of ``(ra, dec)`` onto the tangent plane at ``(ra0, dec0)``.

    Parameters
    ----------
    ra, dec : array-like
        Positions, degrees, any (broadcastable) shape.
    ra0, dec0 : float or array-like
        Tangent point(s), degrees.

    Returns
    -------
    xi, eta : numpy.ndarray
        Standard coordinates, arcsec (``xi`` towards East, ``eta`` towards North).
    """
    a, d = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cos_da = np.cos(a - a0)
    cosc = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * cos_da
    xi = np.cos(d) * np.sin(a - a0) / cosc
    eta = (np.cos(d0) * np.sin(d) - np.sin(d0) * np.cos(d) * cos_da) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def from_tangent_plane(xi, eta, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`tangent_plane`: standard coordinates (arcsec) -> ``(ra, dec)`` in degrees."""
    x, y = np.radians(np.asarray(xi) / 3600.0), np.radians(np.asarray(eta) / 3600.0)
    d0 = np.radians(dec0)
    den = np.cos(d0) - y * np.sin(d0)
    dec = np.arctan2(np.sin(d0) + y * np.cos(d0), np.hypot(x, den))
    ra = np.radians(ra0) + np.arctan2(x, den)
    return np.degrees(ra) % 360.0, np.degrees(dec)


def sky_offsets(ra, dec, ra_ref, dec_ref) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of ``(ra, dec)`` from ``(ra_ref, dec_ref)``: ``(dalpha cos(delta), ddelta)``, arcsec."""
    return tangent_plane(ra, dec, ra_ref, dec_ref)


def pixel_scale(wcs: WCS, x, y) -> np.ndarray:
    """Local pixel scale ``sqrt(|det J|)`` of ``wcs`` at 1-based pixels ``(x, y)``, arcsec/px.

    The Jacobian is taken by central differences of ``all_pix2world`` (distortion included).
    """
    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    ra0, dec0 = wcs.all_pix2world(x, y, 1)
    h = 0.5
    jac = []
    for dx, dy in ((h, 0.0), (0.0, h)):
        ra_p, dec_p = wcs.all_pix2world(x + dx, y + dy, 1)
        ra_m, dec_m = wcs.all_pix2world(x - dx, y - dy, 1)
        xp, yp = tangent_plane(ra_p, dec_p, ra0, dec0)
        xm, ym = tangent_plane(ra_m, dec_m, ra0, dec0)
        jac.append(((xp - xm) / (2 * h), (yp - ym) / (2 * h)))
    (a, c), (b, d) = jac
    return np.sqrt(np.abs(a * d - b * c))


def _rotate(x, y, angle_deg: float):
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return c * x - s * y, s * x + c * y


def unit_vectors(ra, dec) -> np.ndarray:
    """Unit vectors of sky positions (degrees), shape ``ra.shape + (3,)``."""
    a, d = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def reference_tree(ra, dec) -> cKDTree:
    """A k-d tree of the unit vectors of reference positions (degrees), for :func:`match_nearest`."""
    return cKDTree(unit_vectors(np.atleast_1d(ra), np.atleast_1d(dec)).reshape(-1, 3))


def match_nearest(
    ra1, dec1, ra2, dec2, *, radius_arcsec: float, tree: cKDTree | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique nearest-neighbour matches of list 1 in list 2 within a radius.

    Every position of list 1 takes its nearest neighbour in list 2; when several claim the same one, only
    the closest keeps it.

    Parameters
    ----------
    ra1, dec1, ra2, dec2 : array-like
        Positions, degrees, shapes ``(n1,)`` and ``(n2,)``.
    radius_arcsec : float
        Maximum separation, arcsec.
    tree : scipy.spatial.cKDTree, optional
        :func:`reference_tree` of list 2, to reuse over many calls (list 2 is then not read).

    Returns
    -------
    i1, i2 : numpy.ndarray of int
        Indices of the matched pairs, shape ``(m,)``, sorted by ``i1``.
    sep : numpy.ndarray
        Separations, arcsec, shape ``(m,)``.
    """
    empty = np.zeros(0, int)
    tree = reference_tree(ra2, dec2) if tree is None else tree
    if len(np.atleast_1d(ra1)) == 0 or tree.n == 0:
        return empty, empty, np.zeros(0)
    chord = 2.0 * math.sin(math.radians(radius_arcsec / 3600.0) / 2.0)
    dist, i2 = tree.query(unit_vectors(ra1, dec1), distance_upper_bound=chord)
    i1 = np.flatnonzero(np.isfinite(dist))
    if i1.size == 0:
        return empty, empty, np.zeros(0)
    i2, dist = i2[i1], dist[i1]
    order = np.lexsort((dist, i2))  # by reference, closest first
    first = np.r_[True, i2[order][1:] != i2[order][:-1]]
    keep = np.sort(order[first])
    sep = np.degrees(2.0 * np.arcsin(dist[keep] / 2.0)) * 3600.0
    return i1[keep], i2[keep], sep


def _thin(i1, i2, n_max: int = MAX_FIT_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """An evenly spaced subset of at most ``n_max`` matched pairs."""
    step = max(1, math.ceil(i1.size / n_max))
    return i1[::step], i2[::step]


# --------------------------------------------------------------------------------------------------------
# shift + rotation about the optical axis


def _shift_rotation_model(xi, eta, angle_deg: float, shift, center) -> tuple[np.ndarray, np.ndarray]:
    """Sky positions after rotating standard coordinates about the axis and moving the axis by ``shift``."""
    new_ra, new_dec = from_tangent_plane(shift[0], shift[1], *center)
    xr, yr = _rotate(xi, eta, angle_deg)
    return from_tangent_plane(xr, yr, new_ra, new_dec)


def fit_shift_rotation(
    src_ra,
    src_dec,
    ref_ra,
    ref_dec,
    *,
    center: tuple[float, float],
    start: tuple[float, float, float] = (0.0, 0.0, 0.0),
    f_scale: float = 0.5,
) -> dict:
    """Least-squares rotation about the axis and shift of the axis, for matched pairs.

    Model: a source at standard coordinates ``(xi, eta)`` about ``center`` lies at ``R(angle) (xi, eta)``
    in the tangent plane of the new axis, which sits at ``shift`` in the old tangent plane: exactly what
    :func:`apply_shift_rotation` does to the headers. Residuals are ``(dalpha cos(delta), ddelta)`` in
    arcsec; the loss is ``soft_l1`` with scale ``f_scale``.

    Parameters
    ----------
    src_ra, src_dec : array-like
        Source positions from the current WCS, degrees, shape ``(n,)``.
    ref_ra, ref_dec : array-like
        Matched reference positions, degrees, shape ``(n,)``.
    center : tuple of float
        The optical axis (current ``CRVAL``), degrees.
    start : tuple of float, optional
        Initial ``(angle deg, shift_x arcsec, shift_y arcsec)``.
    f_scale : float, optional
        Soft-L1 inlier scale, arcsec.

    Returns
    -------
    dict
        ``angle`` (deg), ``shift`` (arcsec, arcsec), ``n`` (pairs), ``rms`` (arcsec, after the fit), and
        ``residuals`` (shape ``(n, 2)``, arcsec).

    Raises
    ------
    ValueError
        With fewer than 3 pairs.
    """
    src_ra, src_dec = np.asarray(src_ra, float), np.asarray(src_dec, float)
    if src_ra.size < 3:
        raise ValueError(f"fit_shift_rotation needs at least 3 pairs, got {src_ra.size}")
    xi, eta = tangent_plane(src_ra, src_dec, *center)

    def residuals(p):
        ra, dec = _shift_rotation_model(xi, eta, p[0], p[1:], center)
        return np.concatenate(sky_offsets(ra, dec, ref_ra, ref_dec))

    res = least_squares(residuals, np.asarray(start, float), loss="soft_l1", f_scale=f_scale,
                        x_scale=np.array([1e-3, 1.0, 1.0]), method="trf")
    r = res.fun.reshape(2, -1).T
    return {"angle": float(res.x[0]), "shift": (float(res.x[1]), float(res.x[2])), "n": int(src_ra.size),
            "rms": float(np.sqrt(np.mean(np.sum(r**2, axis=1)))), "residuals": r}


def apply_shift_rotation(header: fits.Header, *, angle: float, shift, center) -> fits.Header:
    """Return a copy of an OTA header with a shift + rotation solution applied.

    All OTAs share the tangent point (the optical axis, ``CRVAL``): rotating the field about it is
    ``CD <- R(angle) CD`` with ``CRVAL`` fixed, and the shift moves ``CRVAL`` to the sky position at
    ``shift`` in the tangent plane of ``center``. A header whose ``CRVAL`` differs from ``center`` gets its
    ``CRVAL`` carried along by the same transformation. (The rotation acts before the TPV polynomial;
    for the radial term this is exact, the small non-radial terms differ at the mas level and
    :func:`refine_ota` absorbs that.)

    Parameters
    ----------
    header : astropy.io.fits.Header
        OTA header with CRVAL1/2 and CD1_1..CD2_2.
    angle : float
        Rotation, degrees.
    shift : tuple of float
        New axis in the tangent plane of ``center``, arcsec.
    center : tuple of float
        Old axis, degrees.
    """
    out = header.copy()
    xi, eta = tangent_plane(float(header["CRVAL1"]), float(header["CRVAL2"]), *center)
    ra, dec = _shift_rotation_model(xi, eta, angle, shift, center)
    out["CRVAL1"], out["CRVAL2"] = float(ra), float(dec)
    cd = np.array([[header.get(f"CD{i}_{j}", 0.0) for j in (1, 2)] for i in (1, 2)], float)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    cd = np.array([[c, -s], [s, c]]) @ cd
    for i in (1, 2):
        for j in (1, 2):
            out[f"CD{i}_{j}"] = float(cd[i - 1, j - 1])
    return out


# --------------------------------------------------------------------------------------------------------
# the histogram search


#: With more than ``max_sources`` sources, the histogram takes the brightest within this distance of the
#: axis (a short lever arm keeps the bins of the trial rotations small, so the peak stands out), arcmin.
INNER_RADIUS_ARCMIN = 18.0
#: Pairs per trial rotation in the histogram, at most (sources are dropped, faintest first) ...
MAX_HISTOGRAM_PAIRS = 2_000_000
#: ... but at least this many sources are kept.
MIN_HISTOGRAM_SOURCES = 100
#: Success needs at least this many unique matches within the match radius ...
MIN_SOLUTION_MATCHES = 6
#: ... and a match count that chance alone reaches, anywhere in the search, with a probability below
#: ``10**-MIN_SIGNIFICANCE`` (see :func:`match_significance`).
MIN_SIGNIFICANCE = 3.0
#: The chance level of the matches is measured with the solution moved by this much in 8 directions, arcsec.
CHANCE_OFFSET_ARCSEC = 30.0


@dataclass
class PointingSolution:
    """Result of :func:`find_pointing`.

    Attributes
    ----------
    success : bool
        ``contrast > min_contrast``, at least :data:`MIN_SOLUTION_MATCHES` matches and
        ``significance >= min_significance``.
    angle : float
        Rotation about the axis, degrees (``CD <- R(angle) CD``).
    shift : tuple of float
        New axis in the tangent plane of the old one, arcsec.
    n_matches : int
        Unique source/reference pairs within ``match_radius`` after the solution.
    contrast : float
        ``(n_best - m) / sqrt(m)`` of the histogram peaks, ``m`` the median peak over rotations more
        than 40' from the best (floored at 1).
    significance : float
        :func:`match_significance` of ``n_matches`` (-1 when nothing was searched).
    radius : float
        Search radius of the solution, arcmin.
    qualities : list of float
        Contrast per search radius tried, -1 for radii not tried.
    n_sources : int
        Sources used in the histogram.
    src_index, ref_index : numpy.ndarray
        The matched pairs (indices into the inputs).
    """

    success: bool
    angle: float
    shift: tuple[float, float]
    n_matches: int
    contrast: float
    significance: float
    radius: float
    qualities: list[float]
    n_sources: int
    src_index: np.ndarray = field(repr=False)
    ref_index: np.ndarray = field(repr=False)


def _cells(x, y, bin_arcsec: float, nb: int) -> np.ndarray:
    """Flat index ``floor(y/b) nb + floor(x/b)`` of positions (arcsec) on a grid of ``bin_arcsec``."""
    return np.floor(y / bin_arcsec).astype(np.int64) * nb + np.floor(x / bin_arcsec).astype(np.int64)


def _box_peak(hist: np.ndarray, window: int) -> tuple[float, int, int]:
    """Peak of the 3x3-bin box sum of ``hist`` within ``window`` bins of its centre: (sum, row, column)."""
    h = hist.shape[0] // 2
    sub = hist[h - window - 1:h + window + 2, h - window - 1:h + window + 2]
    rows = sub[:-2] + sub[1:-1] + sub[2:]
    box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    py, px = divmod(int(np.argmax(box)), box.shape[1])
    return float(box[py, px]), py + h - window, px + h - window


def _search_radius(sx, sy, rx, ry, tree, *, radius: float, rotations, bin_arcsec: float):
    """Histogram scores per rotation for one search radius (arcsec); returns scores, shifts and the pairs.

    Sources are taken in the given order (brightest first) while the pairs stay within
    :data:`MAX_HISTOGRAM_PAIRS` (at least :data:`MIN_HISTOGRAM_SOURCES` sources): in a crowded field a
    few dozen sources give a clear peak already, and the cost stays bounded.
    Both ends of every pair are put on the histogram grid before the subtraction, so the offset of a
    pair is known to +-1 bin: the 3x3 box sum of the peak holds it. The grid spans every offset of the
    pairs at every trial rotation (no wrap-around); the peak is searched within ``+-radius``.
    """
    r_max = float(np.hypot(sx, sy).max())
    margin = 2.0 * r_max * math.sin(math.radians(np.max(np.abs(rotations))) / 2.0)  # largest move of a source
    reach = radius + margin
    points = np.column_stack([sx, sy])
    lengths = tree.query_ball_point(points, reach, return_length=True)
    n_use = max(MIN_HISTOGRAM_SOURCES, int(np.searchsorted(np.cumsum(lengths), MAX_HISTOGRAM_PAIRS, side="right")))
    pairs = tree.query_ball_point(points[:n_use], reach)
    counts = np.asarray(lengths[:n_use], int)
    i = np.repeat(np.arange(len(pairs)), counts)
    j = np.concatenate([np.asarray(p, int) for p in pairs]) if counts.sum() else np.zeros(0, int)
    step = float(np.median(np.diff(np.sort(rotations)))) if len(rotations) > 1 else 0.0
    bin_c = max(bin_arcsec, r_max * math.radians(step) / 3.0)
    h = int(math.ceil((reach + margin) / bin_c)) + 1
    nb = 2 * h + 1
    ref_cells = _cells(rx[j], ry[j], bin_c, nb) + h * (nb + 1)
    window = min(h - 1, int(math.ceil(radius / bin_c)))
    scores, shifts = [], []
    for angle in rotations:
        src_cells = _cells(*_rotate(sx, sy, angle), bin_c, nb)
        hist = np.bincount(ref_cells - src_cells[i], minlength=nb * nb).reshape(nb, nb)
        score, py, px = _box_peak(hist, window)
        scores.append(score)
        shifts.append(((px - h) * bin_c, (py - h) * bin_c))
    return np.array(scores), shifts, (i, j), bin_c


def _contrast(scores, rotations, best: int, *, exclude_deg: float = 40.0 / 60.0) -> float:
    far = np.abs(np.asarray(rotations) - rotations[best]) > exclude_deg
    if not far.any():
        return -1.0
    m = max(float(np.median(scores[far])), 1.0)
    return (float(scores[best]) - m) / math.sqrt(m)


def _refine_matches(xi, eta, ref_ra, ref_dec, tree, *, center, start, radii=(5.0, 2.0)):
    """Iterate match (unique nearest) and :func:`fit_shift_rotation` with shrinking radii (arcsec)."""
    src_ra, src_dec = from_tangent_plane(xi, eta, *center)
    params = start
    for r in radii:
        ra, dec = _shift_rotation_model(xi, eta, params[0], params[1:], center)
        i1, i2 = _thin(*match_nearest(ra, dec, None, None, radius_arcsec=r, tree=tree)[:2])
        if i1.size >= 3:
            fit = fit_shift_rotation(src_ra[i1], src_dec[i1], ref_ra[i2], ref_dec[i2], center=center,
                                     start=params)
            params = (fit["angle"], *fit["shift"])
    return params


def _chance_matches(xi, eta, tree, *, center, params, radius: float) -> list[int]:
    """Matches within ``radius`` of the solution moved by :data:`CHANCE_OFFSET_ARCSEC` in 8 directions."""
    out = []
    for k in range(8):
        a = k * math.pi / 4.0
        shift = (params[1] + CHANCE_OFFSET_ARCSEC * math.cos(a), params[2] + CHANCE_OFFSET_ARCSEC * math.sin(a))
        ra, dec = _shift_rotation_model(xi, eta, params[0], shift, center)
        out.append(match_nearest(ra, dec, None, None, radius_arcsec=radius, tree=tree)[0].size)
    return out


def match_significance(n_matches: int, chance_counts, *, search_radius: float, match_radius: float,
                       rotation_range: float, lever_arm: float) -> float:
    """How unlikely chance alone makes a solution with ``n_matches`` matches, ``-log10`` probability.

    The chance count at one trial solution is Poisson with mean ``mu = (sum(chance_counts) + 1) / k``
    (the counts measured at ``k`` displaced solutions, plus one so that an empty field is not certain).
    The search tried about ``T = (R / r)^2 (theta L / r + 1)`` independent solutions (search radius
    ``R``, match radius ``r``, rotation range ``theta`` in radians over the lever arm ``L``), so the
    probability is ``T P(X >= n_matches | mu)``, capped at 1.

    Parameters
    ----------
    n_matches : int
        Matches of the solution.
    chance_counts : sequence of int
        Matches of displaced solutions.
    search_radius, match_radius, lever_arm : float
        ``R``, ``r`` and ``L``, arcsec.
    rotation_range : float
        Range of the trial rotations, degrees.

    Returns
    -------
    float
        ``-log10`` of the probability, in ``[0, 99]`` (99 where it underflows).
    """
    mu = (float(np.sum(chance_counts)) + 1.0) / len(chance_counts)
    trials = (search_radius / match_radius) ** 2 * (math.radians(rotation_range) * lever_arm / match_radius + 1.0)
    log_p = poisson.logsf(n_matches - 1, mu) / math.log(10.0) + math.log10(trials)
    return float(min(-min(log_p, 0.0), 99.0))


def _histogram_sources(xi, eta, order, max_sources: int) -> np.ndarray:
    """The sources of the histogram (indices, brightest first); see :data:`INNER_RADIUS_ARCMIN`."""
    if order.size > max_sources:
        inner = order[np.hypot(xi[order], eta[order]) <= INNER_RADIUS_ARCMIN * 60.0]
        if inner.size >= max_sources:
            return inner[:max_sources]
    return order[:max_sources]


def find_pointing(
    sources,
    refs,
    *,
    center: tuple[float, float],
    max_radius_arcmin=(2.0, 5.0, 8.0, 12.0, 20.0),
    rotations_deg=None,
    bin_arcsec: float = 1.0,
    max_sources: int = 250,
    min_contrast: float = 3.0,
    min_significance: float = MIN_SIGNIFICANCE,
    match_radius: float = 2.0,
    ref_tree: cKDTree | None = None,
) -> PointingSolution:
    """Search the pointing offset and rotation of a field (ccmatch's ``find_best_guess``).

    Sources and references are projected onto the tangent plane at ``center``. For each search radius
    ``R`` and each trial rotation, the offsets (reference - rotated source) of all pairs closer than
    ``R`` go into a 2-D histogram over ``+-R``; the peak of its 3x3-bin box sum scores the rotation.
    The histogram bin is ``bin_arcsec``, widened to 1/3 of the displacement a rotation step causes at
    the outermost source, so that one box holds the matches of the nearest trial rotation
    (coarse-to-fine). The best rotation's peak pairs seed :func:`fit_shift_rotation`, which is then
    iterated over all sources with unique matches within 5" and ``match_radius``.
    As in QuickReduce, after the first radius whose contrast passes, one more radius is tried; the most
    contrasted passing radius is returned (the last radius tried if none passed).

    A solution succeeds when its contrast passes (QuickReduce's ``min_wcs_quality``), it has at least
    :data:`MIN_SOLUTION_MATCHES` matches, and chance cannot explain them: the matches of the solution
    moved by :data:`CHANCE_OFFSET_ARCSEC` measure the chance level, and :func:`match_significance` must
    reach ``min_significance``. Blank fields, a handful of stars and wrong catalogues fail there.

    Parameters
    ----------
    sources : tuple of array-like
        ``(ra, dec, mag)`` from the current WCS, degrees and magnitudes (``mag`` may be None: the given
        order is then used), shape ``(n,)`` each. The ``max_sources`` brightest enter the histogram,
        from within :data:`INNER_RADIUS_ARCMIN` of ``center`` when there are enough there.
    refs : tuple of array-like
        ``(ra, dec)`` of the reference stars, degrees.
    center : tuple of float
        Rotation centre: the optical axis (common ``CRVAL``), degrees.
    max_radius_arcmin : sequence of float, optional
        Search radii, arcmin.
    rotations_deg : array-like, optional
        Trial rotations, degrees; default ``linspace(-3, 3.5, 21)``.
    bin_arcsec : float, optional
        Finest histogram bin, arcsec.
    max_sources : int, optional
        Sources used in the histogram (all are used in the refinement).
    min_contrast : float, optional
        Threshold on the contrast (QuickReduce ``min_wcs_quality``).
    min_significance : float, optional
        Threshold on :func:`match_significance`.
    match_radius : float, optional
        Final match radius, arcsec.
    ref_tree : scipy.spatial.cKDTree, optional
        :func:`reference_tree` of ``refs``, if the caller has one.

    Returns
    -------
    PointingSolution
    """
    rotations = np.linspace(-3.0, 3.5, 21) if rotations_deg is None else np.asarray(rotations_deg, float)
    src_ra, src_dec = np.asarray(sources[0], float), np.asarray(sources[1], float)
    ref_ra, ref_dec = np.asarray(refs[0], float), np.asarray(refs[1], float)
    xi, eta = tangent_plane(src_ra, src_dec, *center)
    order = np.arange(src_ra.size) if sources[2] is None else np.argsort(np.asarray(sources[2]), kind="stable")
    use = _histogram_sources(xi, eta, order, max_sources)
    sx, sy = xi[use], eta[use]
    rx, ry = tangent_plane(ref_ra, ref_dec, *center)
    qualities = [-1.0] * len(max_radius_arcmin)
    empty = np.zeros(0, int)
    failed = PointingSolution(False, 0.0, (0.0, 0.0), 0, -1.0, -1.0, 0.0, qualities, int(use.size), empty, empty)
    if use.size < 3 or ref_ra.size < 3:
        return failed
    tree = cKDTree(np.column_stack([rx, ry]))
    chosen, passed = None, False
    for k, radius in enumerate(max_radius_arcmin):
        scores, shifts, pairs, bin_c = _search_radius(sx, sy, rx, ry, tree, radius=radius * 60.0,
                                                      rotations=rotations, bin_arcsec=bin_arcsec)
        best = int(np.argmax(scores))
        contrast = _contrast(scores, rotations, best)
        qualities[k] = round(contrast, 2)
        ok = contrast > min_contrast
        if not passed or (ok and contrast > chosen[0]):
            chosen = (contrast, radius, rotations[best], shifts[best], pairs, bin_c)
        if passed:  # the one more radius after the first pass has been tried
            break
        passed = ok
    contrast, radius, angle, shift, (pi, pj), bin_c = chosen
    # seed pairs: offsets inside the peak box of the best rotation
    ux, uy = _rotate(sx[pi], sy[pi], angle)
    dx, dy = rx[pj] - ux - shift[0], ry[pj] - uy - shift[1]
    seed = (np.abs(dx) <= 1.5 * bin_c) & (np.abs(dy) <= 1.5 * bin_c)
    if seed.sum() < 3:
        return failed
    fit = fit_shift_rotation(src_ra[use][pi[seed]], src_dec[use][pi[seed]], ref_ra[pj[seed]], ref_dec[pj[seed]],
                             center=center, start=(angle, *shift), f_scale=bin_c)
    ref_tree = reference_tree(ref_ra, ref_dec) if ref_tree is None else ref_tree
    params = _refine_matches(xi, eta, ref_ra, ref_dec, ref_tree, center=center, start=(fit["angle"], *fit["shift"]),
                             radii=(5.0, match_radius))
    i1, i2, _ = match_nearest(*_shift_rotation_model(xi, eta, params[0], params[1:], center), None, None,
                              radius_arcsec=match_radius, tree=ref_tree)
    chance = _chance_matches(xi, eta, ref_tree, center=center, params=params, radius=match_radius)
    significance = match_significance(i1.size, chance, search_radius=radius * 60.0, match_radius=match_radius,
                                      rotation_range=float(np.ptp(rotations)),
                                      lever_arm=float(np.hypot(xi, eta).max()))
    success = bool(contrast > min_contrast and i1.size >= MIN_SOLUTION_MATCHES and significance >= min_significance)
    return PointingSolution(success, float(params[0]), (float(params[1]), float(params[2])), int(i1.size),
                            float(contrast), significance, float(radius), qualities, int(use.size), i1, i2)


# --------------------------------------------------------------------------------------------------------
# per-OTA refinement


def _wcs_params(wcs: WCS, params, crval0, cd0, mode: str) -> None:
    ra, dec = from_tangent_plane(params[0], params[1], *crval0)
    wcs.wcs.crval = [float(ra), float(dec)]
    if mode == "otashear":
        a = np.array([[1.0 + params[2], params[3]], [params[4], 1.0 + params[5]]])
        wcs.wcs.cd = a @ cd0
    wcs.wcs.set()


def _control_points(header: fits.Header, x, y, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An ``n x n`` grid of 1-based pixels over the OTA (``NAXIS1/2``, else the sources' extent)."""
    if "NAXIS1" in header and "NAXIS2" in header:
        (x0, x1), (y0, y1) = (1.0, float(header["NAXIS1"])), (1.0, float(header["NAXIS2"]))
    else:
        (x0, x1), (y0, y1) = (float(np.min(x)), float(np.max(x))), (float(np.min(y)), float(np.max(y)))
    gx, gy = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return gx.ravel(), gy.ravel()


def prior_error(header: fits.Header) -> float:
    """A-priori position error per axis of an OTA's canned WCS, arcsec.

    ``hypot(ASTRRMS1, ASTRRMS2) / sqrt(2)`` (degrees, SCAMP's cards in QuickReduce's canned files) when
    the header has them, else :data:`DEFAULT_PRIOR_ARCSEC`.
    """
    if "ASTRRMS1" in header and "ASTRRMS2" in header:
        return math.hypot(float(header["ASTRRMS1"]), float(header["ASTRRMS2"])) / math.sqrt(2.0) * 3600.0
    return DEFAULT_PRIOR_ARCSEC


def refine_ota(
    header: fits.Header,
    x,
    y,
    ref_ra,
    ref_dec,
    *,
    mode: str = "otashear",
    f_scale: float = 0.3,
    prior_arcsec: float | None = None,
    star_sigma: float = 0.1,
) -> tuple[fits.Header, np.ndarray, bool]:
    """Per-OTA least squares of ``CRVAL`` (``otashift``) or ``CRVAL`` and ``CD`` (``otashear``).

    The residuals ``(dalpha cos(delta), ddelta)`` between ``all_pix2world(x, y)`` and the reference
    stars (arcsec) are minimised with ``scipy.optimize.least_squares(loss='soft_l1')``. ``CRVAL`` moves
    in the tangent plane of the old one; ``CD <- (1 + A) CD`` with a free 2x2 ``A``. ``PV`` terms, ``CRPIX``
    and ``CTYPE`` stay fixed.

    Without a prior, OTAs with fewer than 5 (``otashift``) / 10 (``otashear``) pairs keep their header.
    With ``prior_arcsec`` (the error per axis of the input header, e.g. :func:`prior_error` of the canned
    model), every OTA with a pair is refined and the fit is regularised towards the input header: the
    displacements of a 3x3 grid of control points over the OTA enter as residuals weighted
    ``star_sigma / prior_arcsec / 3`` (a Gaussian prior of ``prior_arcsec`` rms on the displacement
    over the OTA, for stars of ``star_sigma`` error per axis). A few stars then move the WCS only as far
    as they outweigh the prior.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The OTA header (TAN/TPV WCS); ``NAXIS1/2`` place the control points (else the sources' extent).
    x, y : array-like
        **1-based** pixel positions of the matched sources, shape ``(n,)``.
    ref_ra, ref_dec : array-like
        Matched reference positions, degrees, shape ``(n,)``.
    mode : {'otashear', 'otashift'}
        Parameters fitted.
    f_scale : float, optional
        Soft-L1 inlier scale, arcsec.
    prior_arcsec : float, optional
        Error per axis of the input WCS, arcsec; None: no prior.
    star_sigma : float, optional
        Error per axis of one source-reference pair, arcsec (only used with a prior).

    Returns
    -------
    header : astropy.io.fits.Header
        A refined copy (the input copy when not refined).
    residuals : numpy.ndarray
        Shape ``(n, 2)``, arcsec, with the returned header.
    refined : bool
        Whether the fit ran.
    """
    if mode not in MIN_MATCHES:
        raise ValueError(f"mode must be one of {sorted(MIN_MATCHES)}, got {mode!r}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    ref_ra, ref_dec = np.asarray(ref_ra, float), np.asarray(ref_dec, float)
    out = header.copy()
    refined = x.size >= (1 if prior_arcsec else MIN_MATCHES[mode])
    if refined:
        wcs = header_wcs(header)
        crval0 = tuple(float(v) for v in wcs.wcs.crval)
        cd0 = wcs.wcs.cd.copy() if wcs.wcs.has_cd() else wcs.pixel_scale_matrix
        weight = np.ones(x.size)
        target_ra, target_dec, px, py = ref_ra, ref_dec, x, y
        if prior_arcsec:
            cx, cy = _control_points(header, x, y)
            cra, cdec = wcs.all_pix2world(cx, cy, 1)
            weight = np.r_[weight, np.full(cx.size, star_sigma / prior_arcsec / math.sqrt(cx.size))]
            target_ra, target_dec, px, py = np.r_[ref_ra, cra], np.r_[ref_dec, cdec], np.r_[x, cx], np.r_[y, cy]

        def residuals(p):
            _wcs_params(wcs, p, crval0, cd0, mode)
            ra, dec = wcs.all_pix2world(px, py, 1)
            return np.concatenate([d * weight for d in sky_offsets(ra, dec, target_ra, target_dec)])

        npar = 2 if mode == "otashift" else 6
        res = least_squares(residuals, np.zeros(npar), loss="soft_l1", f_scale=f_scale, method="trf",
                            x_scale=np.r_[1.0, 1.0, np.full(npar - 2, 1e-5)])
        _wcs_params(wcs, res.x, crval0, cd0, mode)
        out["CRVAL1"], out["CRVAL2"] = (float(v) for v in wcs.wcs.crval)
        if mode == "otashear":
            for i in (1, 2):
                for j in (1, 2):
                    out[f"CD{i}_{j}"] = float(wcs.wcs.cd[i - 1, j - 1])
    ra, dec = header_wcs(out).all_pix2world(x, y, 1)
    return out, np.column_stack(sky_offsets(ra, dec, ref_ra, ref_dec)), refined


# --------------------------------------------------------------------------------------------------------
# quality


def wcs_quality(ra_src, dec_src, ra_ref, dec_ref) -> dict:
    """QuickReduce's WCS quality keywords for matched pairs (spec section 4.6 item 8).

    Returns
    -------
    dict
        ``WCS_RMSA``, ``WCS_RMSD``, ``WCS_RMS`` (rms of ``dalpha cos(delta)``, ``ddelta`` and of the total
        offset, arcsec), ``WCS_ERRA``, ``WCS_ERRD`` (median offsets, arcsec), ``WCS_NSRC``, ``WCS_SIGA``,
        ``WCS_SIGD``, ``WCS_SIG`` (``(P84 - P16)/2``, arcsec; ``WCS_SIG`` of the total offset),
        ``WCSCRMSA``, ``WCSCRMSD``, ``WCSCRMS`` (the rms values after a 3-iteration 3-sigma clip on the total
        offset). Values are NaN without pairs.
    """
    da, dd = sky_offsets(ra_src, dec_src, ra_ref, dec_ref)
    da, dd = np.atleast_1d(da), np.atleast_1d(dd)
    dt = np.hypot(da, dd)
    out = {"WCS_NSRC": int(da.size)}
    if da.size == 0:
        nan_keys = ("WCS_RMSA", "WCS_RMSD", "WCS_RMS", "WCS_ERRA", "WCS_ERRD", "WCS_SIGA", "WCS_SIGD",
                    "WCS_SIG", "WCSCRMSA", "WCSCRMSD", "WCSCRMS")
        return {**out, **dict.fromkeys(nan_keys, float("nan"))}

    def rms(v):
        return float(np.sqrt(np.mean(np.square(v)))) if v.size else float("nan")

    def sig(v):
        p16, p84 = np.percentile(v, [15.87, 84.13])
        return float(0.5 * (p84 - p16))

    kept = dt <= three_sigma_clip(dt).max() if dt.size >= 3 else np.ones(dt.size, bool)
    out.update({
        "WCS_RMSA": rms(da), "WCS_RMSD": rms(dd), "WCS_RMS": rms(dt),
        "WCS_ERRA": float(np.median(da)), "WCS_ERRD": float(np.median(dd)),
        "WCS_SIGA": sig(da), "WCS_SIGD": sig(dd), "WCS_SIG": sig(dt),
        "WCSCRMSA": rms(da[kept]), "WCSCRMSD": rms(dd[kept]), "WCSCRMS": rms(dt[kept]),
    })
    return out


# --------------------------------------------------------------------------------------------------------
# pixel <-> sky over the focal plane


def odi2wcs(headers_by_ota: dict, ota: int, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Pixel -> sky for one OTA: **1-based** ``(x, y)`` -> ``(ra, dec)`` degrees (distortion included)."""
    return header_wcs(headers_by_ota[ota]).all_pix2world(np.asarray(x, float), np.asarray(y, float), 1)


def wcs2odi(headers_by_ota: dict, ra, dec, *, size: tuple[int, int] | None = None):
    """Sky -> focal plane: the OTA and **1-based** pixel of each position.

    Parameters
    ----------
    headers_by_ota : dict
        OTA number -> header (with ``NAXIS1/2``, or give ``size``).
    ra, dec : array-like
        Positions, degrees, shape ``(n,)``.
    size : tuple of int, optional
        ``(nx, ny)`` of the OTAs when the headers lack ``NAXIS1/2``.

    Returns
    -------
    ota : numpy.ndarray of int
        OTA holding the position, -1 if none (a gap or outside the focal plane).
    x, y : numpy.ndarray
        1-based pixels on that OTA, NaN if none. A pixel covers ``[i - 0.5, i + 0.5)``.
    """
    ra, dec = np.atleast_1d(np.asarray(ra, float)), np.atleast_1d(np.asarray(dec, float))
    ota = np.full(ra.size, -1)
    x, y = np.full(ra.size, np.nan), np.full(ra.size, np.nan)
    for key, hdr in headers_by_ota.items():
        nx = int(hdr.get("NAXIS1", 0)) or (size[0] if size else 0)
        ny = int(hdr.get("NAXIS2", 0)) or (size[1] if size else 0)
        wcs = header_wcs(hdr)
        # stay far from the projection's horizon (the antipode projects onto the axis)
        near = (ota < 0) & (unit_vectors(ra, dec) @ unit_vectors(*wcs.wcs.crval) > math.cos(math.radians(2.0)))
        if not near.any():
            continue
        px, py = wcs.all_world2pix(ra[near], dec[near], 1, tolerance=1e-6, maxiter=50, quiet=True)
        inside = (px >= 0.5) & (px < nx + 0.5) & (py >= 0.5) & (py < ny + 0.5)
        idx = np.flatnonzero(near)[inside]
        ota[idx], x[idx], y[idx] = key, px[inside], py[inside]
    return ota, x, y


def nonsidereal_offsets(dra: float, ddec: float, ref_mjd: float, mjd: float, dec: float) -> dict:
    """The ``-nonsidereal`` correction of ``CRVAL`` (spec section 4.8).

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


# --------------------------------------------------------------------------------------------------------
# the whole exposure

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


def _refine_one(header, x, y, ref_ra, ref_dec, *, mode: str, star_sigma: float, prior: bool):
    """:func:`refine_ota` of one OTA; ``otashear`` only where its 4 extra parameters pay off.

    ``CRVAL`` alone is fitted first; ``CD`` too (with at least ``MIN_MATCHES['otashear']`` pairs, or
    :data:`MIN_PRIOR_SHEAR_MATCHES` with the prior) is kept
    only if it lowers the Bayesian information criterion ``m ln(RSS) + k ln(m)`` of the ``m = 2n`` residuals:
    with a few dozen noisy pairs a free ``CD`` mostly fits the noise at the OTA's edges.
    """
    def fit(fit_mode):
        return refine_ota(header, x, y, ref_ra, ref_dec, mode=fit_mode, star_sigma=star_sigma,
                          prior_arcsec=prior_error(header) if prior else None)

    shift = fit("otashift")
    if mode != "otashear" or x.size < (MIN_PRIOR_SHEAR_MATCHES if prior else MIN_MATCHES["otashear"]):
        return shift
    shear = fit("otashear")
    m = 2 * x.size
    rss_shift, rss_shear = (float(np.sum(np.square(r[1]))) for r in (shift, shear))
    return shear if m * math.log(max(rss_shear, 1e-30) / max(rss_shift, 1e-30)) + 4 * math.log(m) < 0 else shift


def _refine_otas(headers, sources, refs, tree, *, mode: str, star_sigma: float, prior: bool):
    """:func:`_refine_one` on every OTA with its unique matches within 3"; returns headers and flags."""
    out, refined = dict(headers), {}
    for ota, pairs in _match_by_ota(_radec(headers, sources), tree, 3.0).items():
        i1, i2 = _thin(*pairs)
        out[ota], _, refined[ota] = _refine_one(headers[ota], sources[ota][0][i1], sources[ota][1][i1],
                                                refs[0][i2], refs[1][i2], mode=mode, star_sigma=star_sigma,
                                                prior=prior)
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
) -> FocalPlaneSolution:
    """Astrometric calibration of an exposure (ccmatch): search, focal-plane fit, per-OTA refinement.

    Parameters
    ----------
    headers_by_ota : dict
        OTA -> header with the current (canned) WCS; all share the optical axis as ``CRVAL``.
    sources_by_ota : dict
        OTA -> ``(x, y, mag)`` of the selected sources, **1-based** pixels (``CAT.ODI`` ``X``, ``Y``,
        ``MAG_AUTO``), shape ``(n,)`` each.
    refs : tuple of array-like
        ``(ra, dec)`` of the reference stars at the exposure epoch, degrees.
    mode : {'shift', 'rotation', 'otashift', 'otashear'}
        Last step run: the search only, + the focal-plane shift/rotation fit (unique matches within 5",
        more than 10 needed), + per-OTA ``CRVAL`` (matches within 3"), or ``CRVAL`` and ``CD``. In
        ``otashear`` mode an OTA gets its ``CD`` refined only with at least 20 matches (10 without the
        prior) and where that lowers the BIC of its residuals (see ``_refine_one``); otherwise only its
        ``CRVAL``.
    center : tuple of float, optional
        Optical axis, degrees; default the first header's ``CRVAL``.
    max_radius_arcmin, rotations_deg, min_contrast, max_sources
        Passed to :func:`find_pointing`.
    prior : bool, optional
        Regularise the per-OTA refinement towards the canned model (:func:`refine_ota` with
        :func:`prior_error` of each header and the pair error measured after the focal-plane fit), so
        that OTAs with few matches are refined as far as their stars outweigh the model's own error.
        False: QuickReduce's unregularised fit (5 pairs for ``CRVAL``, 10 for ``CD``).

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
            i1, i2 = _thin(*match_nearest(*_shift_rotation_model(xi, eta, angle, shift, center), None, None,
                                          radius_arcsec=5.0, tree=tree)[:2])
            if i1.size > 10:
                rotation_fit = fit_shift_rotation(src_ra[i1], src_dec[i1], ref_ra[i2], ref_dec[i2], center=center,
                                                  start=(angle, *shift))
                angle, shift = rotation_fit["angle"], rotation_fit["shift"]
        headers = {ota: apply_shift_rotation(hdr, angle=angle, shift=shift, center=center)
                   for ota, hdr in headers_by_ota.items()}
        if mode in ("otashift", "otashear"):
            sigma = _star_sigma(rotation_fit["residuals"] if rotation_fit else [])
            headers, done = _refine_otas(headers, sources, (ref_ra, ref_dec), tree, mode=mode, star_sigma=sigma,
                                         prior=prior)
            refined.update(done)
        radec = _radec(headers, sources)
        matches = _match_by_ota(radec, tree, 2.0)
    else:
        matches = {ota: (np.zeros(0, int), np.zeros(0, int)) for ota in sources}
    pairs = {ota: (radec[ota][0][i1], radec[ota][1][i1], ref_ra[i2], ref_dec[i2]) for ota, (i1, i2) in matches.items()}
    quality = wcs_quality(*(np.concatenate([np.zeros(0)] + [p[k] for p in pairs.values()]) for k in range(4)))
    return FocalPlaneSolution(bool(pointing.success), headers, pointing, rotation_fit, refined, matches, radec,
                              quality, {ota: wcs_quality(*p) for ota, p in pairs.items()})
