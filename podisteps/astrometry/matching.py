"""Unique nearest-neighbour matching of sources to reference stars, and the quality of the matches."""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from ..stats import three_sigma_clip
from .projection import sky_offsets, unit_vectors


#: Pairs entering one least-squares fit, at most (more only cost time: an even subset is used).
MAX_FIT_PAIRS = 2000


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


def thin_pairs(i1, i2, n_max: int = MAX_FIT_PAIRS) -> tuple[np.ndarray, np.ndarray]:
    """An evenly spaced subset of at most ``n_max`` matched pairs."""
    step = max(1, math.ceil(i1.size / n_max))
    return i1[::step], i2[::step]


def wcs_quality(ra_src, dec_src, ra_ref, dec_ref) -> dict:
    """QuickReduce's WCS quality keywords for matched pairs (docs/astrometry.md, 'WCS keywords and tables').

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
