"""Sky sampling in boxes that avoid sources (docs/reduction-steps.md, 'Sky boxes', x/y [bug] fixed).

Random box centres are drawn uniformly; a box is accepted if all its pixels are finite and no source
lies closer than ``min_distance`` to its centre (QuickReduce swapped x and y in that test). The sky of a
box is the median of its pixels. These samples are the per-OTA measurement the global sky level is
fitted from.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from ..stats import three_sigma_clip

__all__ = ["sample_sky_boxes", "sky_statistics", "SKY_INVALID"]

#: QuickReduce's value for an undefined sky statistic.
SKY_INVALID = -99999.99


def sample_sky_boxes(
    data: np.ndarray,
    *,
    rng: np.random.Generator,
    box: int = 60,
    n_accept: int = 200,
    n_try: int = 300,
    sources: np.ndarray | None = None,
    min_distance: float = 90.0,
) -> Table:
    """Measure the sky in random boxes that avoid sources and undefined pixels.

    Parameters
    ----------
    data : numpy.ndarray
        OTA image, shape ``(ny, nx)``, ADU; NaN where undefined.
    rng : numpy.random.Generator
        Source of the box positions (seed it for reproducible products).
    box : int, optional
        Box side, pixels (60 at full-size bin1; scale it for binned or test frames).
    n_accept, n_try : int, optional
        Stop after ``n_accept`` accepted boxes or ``n_try`` candidates.
    sources : numpy.ndarray, optional
        Source positions, shape ``(n, 2)`` as 0-based ``(x, y)`` pixels.
    min_distance : float, optional
        Minimum distance of a source from the box centre, pixels.

    Returns
    -------
    astropy.table.Table
        Columns ``X``, ``Y`` (0-based box centre, px), ``INTENSITY`` (median, ADU), ``TRY`` (candidate
        index), ``MIN_D`` (distance to the nearest source, px; inf without sources).
    """
    ny, nx = data.shape
    half = box // 2
    rows = []
    if nx > 2 * half and ny > 2 * half:
        xs = rng.integers(half, nx - half, n_try)
        ys = rng.integers(half, ny - half, n_try)
        src = np.empty((0, 2)) if sources is None else np.asarray(sources, dtype=float).reshape(-1, 2)
        for i, (x, y) in enumerate(zip(xs, ys)):
            cut = data[y - half:y + half, x - half:x + half]
            if not np.isfinite(cut).all():
                continue
            dmin = float(np.min(np.hypot(src[:, 0] - x, src[:, 1] - y))) if len(src) else np.inf
            if dmin < min_distance:
                continue
            rows.append((x, y, float(np.median(cut)), i, dmin))
            if len(rows) >= n_accept:
                break
    return Table(rows=rows or None, names=("X", "Y", "INTENSITY", "TRY", "MIN_D"),
                 dtype=("i4", "i4", "f4", "i4", "f4"))


def sky_statistics(values: np.ndarray) -> dict:
    """Sky statistics of a set of box medians (docs/reduction-steps.md, 'Global sky level' keywords).

    Parameters
    ----------
    values : numpy.ndarray
        Box medians, ADU.

    Returns
    -------
    dict
        ``SKYLEVEL`` (median), ``SKYBGCLP`` (3-sigma clipped median), ``SKYBGMIN``, ``SKYBGSTD``,
        ``SKYSMPLS``, ``SKYL1SIG``/``SKYU1SIG`` (15.87/84.13 %), ``SKYL2SIG``/``SKYU2SIG`` (2.28/97.72 %),
        ``SKY_LO5P`` (5th percentile), ``SKY_LO5S`` (mean of the 5 lowest); ``SKY_INVALID`` without data.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    keys = ("SKYLEVEL", "SKYBGCLP", "SKYBGMIN", "SKYBGSTD", "SKYL1SIG", "SKYU1SIG", "SKYL2SIG",
            "SKYU2SIG", "SKY_LO5P", "SKY_LO5S")
    if v.size == 0:
        return {**dict.fromkeys(keys, SKY_INVALID), "SKYSMPLS": 0}
    clipped = three_sigma_clip(v)
    pct = np.percentile(v, [15.87, 84.13, 2.28, 97.72, 5.0])
    return {
        "SKYLEVEL": float(np.median(v)),
        "SKYBGCLP": float(np.median(clipped)),
        "SKYBGMIN": float(v.min()),
        "SKYBGSTD": float(np.std(v)),
        "SKYSMPLS": int(v.size),
        "SKYL1SIG": float(pct[0]),
        "SKYU1SIG": float(pct[1]),
        "SKYL2SIG": float(pct[2]),
        "SKYU2SIG": float(pct[3]),
        "SKY_LO5P": float(pct[4]),
        "SKY_LO5S": float(np.mean(np.sort(v)[:5])),
    }
