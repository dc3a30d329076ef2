"""The pointing search: a robust initial shift and rotation of the whole focal plane (:func:`find_pointing`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import pdtrc

from .matching import match_nearest, reference_tree, thin_pairs
from .projection import from_tangent_plane, rotate, tangent_plane
from .refinement import fit_shift_rotation, shift_rotation_model


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
        src_cells = _cells(*rotate(sx, sy, angle), bin_c, nb)
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
        ra, dec = shift_rotation_model(xi, eta, params[0], params[1:], center)
        i1, i2 = thin_pairs(*match_nearest(ra, dec, None, None, radius_arcsec=r, tree=tree)[:2])
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
        ra, dec = shift_rotation_model(xi, eta, params[0], shift, center)
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
    # log P(N >= n_matches) for N ~ Poisson(mu); scipy.special rather than scipy.stats (same values, and no
    # 0.3 s import of scipy.stats in every podiflow process)
    with np.errstate(divide="ignore"):  # an underflow to 0 is -inf here, and 99 below
        log_sf = float(np.log(pdtrc(n_matches - 1, mu))) if n_matches > 0 else 0.0
    log_p = log_sf / math.log(10.0) + math.log10(trials)
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
    ux, uy = rotate(sx[pi], sy[pi], angle)
    dx, dy = rx[pj] - ux - shift[0], ry[pj] - uy - shift[1]
    seed = (np.abs(dx) <= 1.5 * bin_c) & (np.abs(dy) <= 1.5 * bin_c)
    if seed.sum() < 3:
        return failed
    fit = fit_shift_rotation(src_ra[use][pi[seed]], src_dec[use][pi[seed]], ref_ra[pj[seed]], ref_dec[pj[seed]],
                             center=center, start=(angle, *shift), f_scale=bin_c)
    ref_tree = reference_tree(ref_ra, ref_dec) if ref_tree is None else ref_tree
    params = _refine_matches(xi, eta, ref_ra, ref_dec, ref_tree, center=center, start=(fit["angle"], *fit["shift"]),
                             radii=(5.0, match_radius))
    i1, i2, _ = match_nearest(*shift_rotation_model(xi, eta, params[0], params[1:], center), None, None,
                              radius_arcsec=match_radius, tree=ref_tree)
    chance = _chance_matches(xi, eta, ref_tree, center=center, params=params, radius=match_radius)
    significance = match_significance(i1.size, chance, search_radius=radius * 60.0, match_radius=match_radius,
                                      rotation_range=float(np.ptp(rotations)),
                                      lever_arm=float(np.hypot(xi, eta).max()))
    success = bool(contrast > min_contrast and i1.size >= MIN_SOLUTION_MATCHES and significance >= min_significance)
    return PointingSolution(success, float(params[0]), (float(params[1]), float(params[2])), int(i1.size),
                            float(contrast), significance, float(radius), qualities, int(use.size), i1, i2)


