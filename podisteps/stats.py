"""Robust statistics used throughout the pipeline."""

from __future__ import annotations

import numpy as np

__all__ = ["three_sigma_clip", "block_median", "median"]


def three_sigma_clip(
    values: np.ndarray,
    *,
    lo: float = -np.inf,
    hi: float = np.inf,
    nrep: int = 3,
    nsigma: float = 3.0,
) -> np.ndarray:
    """QuickReduce's ``three_sigma_clip``: iterative clipping with a percentile sigma.

    Start from the finite values inside ``(lo, hi)``; ``nrep`` times, with
    ``sigma = (P84 - P16) / 2``, keep the values within ``median +- nsigma * sigma``.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; flattened.
    lo, hi : float, optional
        Open range of acceptable values.
    nrep : int, optional
        Iterations.
    nsigma : float, optional
        Clipping half-width in sigma.

    Returns
    -------
    numpy.ndarray
        The kept values, 1-D (possibly empty).
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > lo) & (v < hi)]
    for _ in range(nrep):
        if v.size < 3:
            break
        p16, med, p84 = np.percentile(v, [15.87, 50.0, 84.13])
        keep = np.abs(v - med) <= nsigma * 0.5 * (p84 - p16)
        if keep.all():
            break
        v = v[keep]
    return v


def block_median(data: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """nanmedian of ``block x block`` blocks of an image (binned sky for the pupil-ghost fits and sky planes).

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx), ADU; NaN where undefined. Partial blocks at the top and right edges are dropped.
    block : int
        Block side, frame px.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        Shape (m,) each: block medians (ADU) and block centres x, y (frame px) of the blocks with a finite
        pixel.
    """
    ny, nx = (d // block * block for d in data.shape)
    blocks = np.asarray(data)[:ny, :nx].reshape(ny // block, block, nx // block, block)
    finite = np.isfinite(blocks).any(axis=(1, 3))
    values = np.full(finite.shape, np.nan)
    values[finite] = np.nanmedian(blocks.transpose(0, 2, 1, 3)[finite], axis=(1, 2))
    yb, xb = np.indices(finite.shape) * block + (block - 1) / 2
    return values[finite], xb[finite], yb[finite]


def median(values: np.ndarray):
    """``np.median(values)`` (all values, ``axis=None``), the same number bit for bit, from one selection.

    np.median partitions its copy at both middle ranks and at the last one (its NaN test); here the copy is
    partitioned at the upper middle rank only, the lower middle value is the largest below it and a NaN sorts
    into the upper half. The mean of the two middle values is taken as np.median takes it (of a tie of -0.0
    and +0.0 at the middle either zero may be taken, by either function). 4x faster on the overscan blocks
    of a full-size OTA (64 blocks of 24 700 float32 pixels: 17 -> 4 ms).

    Parameters
    ----------
    values : numpy.ndarray
        Real numbers, any shape (not modified).

    Returns
    -------
    numpy.floating
        The median (the input's float type, float64 for integers); NaN if any value is NaN.
    """
    part = np.asarray(values).flatten()  # a copy, partitioned in place
    if part.size == 0:
        return np.median(part)  # NaN with numpy's warning
    m = part.size // 2
    part.partition(m)
    if np.isnan(part[m:].max()):  # NaN sorts last: in the upper half if anywhere
        return np.median(part)
    if part.size % 2:
        return np.mean(part[m:m + 1])
    part[m - 1] = part[:m].max()
    return np.mean(part[m - 1:m + 1])
