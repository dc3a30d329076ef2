"""Per-pixel combination of calibration frames (docs/masters.md, 'Combining frames', ``imcombine``).

:func:`sigma_clip_mean` is QuickReduce's ``sigmaclipmean`` (``cython_src/sigma_clip_mean.c``), vectorised over
pixels: per pixel, drop the NaNs and sort; up to ``max_iter`` times compute the median and
``sigma = (q84 - q16) / 2`` of the kept values (GSL ``quantile_from_sorted_data``: linear interpolation at
index ``f * (k - 1)``, f = 0.16 and 0.84), keep the values in ``[median - nsigma*sigma, median + nsigma*sigma]``;
stop when nothing changes or fewer than ``min_keep`` values would remain; return the mean of the kept values.
Statistics and the mean are computed in float64, as the C code does.

Because the values of a pixel are sorted, the kept values are always a contiguous run ``[start, end)`` of the
sorted column, so one clipping step is two counts per pixel (values below the lower limit, values up to the
upper limit) and the work per iteration is a few passes over the block, with no per-pixel Python loop.

Frames are combined in blocks of rows, so the memory beyond the input is bounded by ``block_pixels`` (a
sorted float32 copy of the block plus a few temporaries of the same size), and the input may be a list of
2-D arrays (e.g. memory-mapped FITS images) rather than one 3-D stack.

Speed and memory, measured on 2 shared cores (numpy 2.4; ``sigma_clip_mean`` of 10 frames of 4096 x 4096
float32 with Gaussian noise and 0.1 % cosmic rays, default ``block_pixels``): about 5 s (0.3 s per million
pixels, a fifth of it sorting; ``median_combine`` about 2 s), and a peak of about 290 MB allocated beyond the
670 MB stack, of which 100 MB are the two outputs: ~1.45x the stack in total. Time and memory scale linearly
with the number of frames and pixels. Columns with ``min_keep`` or fewer values cannot be clipped and skip the
clipping, and up to :data:`SMALL_STACK` frames are sorted by compare-and-swap: 3 frames of 4096 x 4096 take
about 1.1 CPU-s (6.0 before both).
"""

from __future__ import annotations

import numpy as np

__all__ = ["sigma_clip_mean", "median_combine"]

#: Quantiles whose half-difference is sigma (QuickReduce passes 0.16 and 0.84 to GSL).
_Q_LOW, _Q_HIGH = 0.16, 0.84

#: Default number of pixels combined at once (about 4 MB of input per frame).
BLOCK_PIXELS = 1 << 20

#: Up to this many frames (the usual 3-frame masters), columns are sorted by :func:`_transposition_sort`
#: rather than ``ndarray.sort``.
SMALL_STACK = 4


def _frames(stack) -> tuple[list, tuple[int, int]]:
    """Return the frames of ``stack`` as a list and their common 2-D shape."""
    frames = list(stack)
    if not frames:
        raise ValueError("cannot combine an empty stack")
    shape = np.shape(frames[0])
    if len(shape) != 2 or any(np.shape(f) != shape for f in frames):
        raise ValueError(f"all frames must be 2-D with the same shape; got {[np.shape(f) for f in frames]}")
    return frames, shape


def _row_blocks(frames: list, shape: tuple[int, int], block_pixels: int):
    """Yield ``(rows, sorted_values, counts)`` for blocks of whole rows of ``frames``.

    ``sorted_values`` has shape ``(n_frames, n_pixels_in_block)``, float32 (float64 for float64 or wide
    integer input), each column sorted ascending with non-finite values replaced by NaN and placed last;
    ``counts`` is the number of finite values per column.
    """
    ny, nx = shape
    dtype = np.result_type(np.asarray(frames[0][:1, :1]).dtype, np.float32)
    step = max(1, int(block_pixels) // max(nx, 1))
    for r0 in range(0, ny, step):
        rows = slice(r0, min(r0 + step, ny))
        values = np.stack([np.asarray(f[rows], dtype=dtype) for f in frames]).reshape(len(frames), -1)
        finite = np.isfinite(values)
        if len(frames) > SMALL_STACK:
            values[~finite] = np.nan
            values.sort(axis=0)
        else:  # non-finite as +inf, sorted last, then NaN
            np.copyto(values, np.inf, where=~finite)
            _transposition_sort(values)
            np.copyto(values, np.nan, where=np.isinf(values))
        yield rows, values, _count(finite)


def _transposition_sort(values: np.ndarray) -> None:
    """Sort every column of a ``(n, n_pixels)`` array ascending in place by odd-even transposition.

    ``n`` rounds of compare-and-swap between neighbouring rows; whole values are swapped, so each column
    keeps exactly its values (as ``ndarray.sort``). For 3 frames it takes 0.03 CPU-s per million pixels,
    ``values.sort(axis=0)`` 0.055; from 5 frames on the sort is faster. NaN must not occur (use +inf).
    """
    n = values.shape[0]
    for round_ in range(n):
        for i in range(round_ % 2, n - 1, 2):
            low, high = values[i], values[i + 1]
            swap = low > high
            smaller = np.where(swap, high, low)
            np.copyto(high, low, where=swap)
            low[...] = smaller


def _count(mask: np.ndarray) -> np.ndarray:
    """Number of True per column of a ``(n_frames, n_pixels)`` mask (int16 sums are the fastest)."""
    return mask.sum(axis=0, dtype=np.int16).astype(np.intp)


def _limits_in(dtype, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return limits of ``dtype`` that select exactly the values ``>= lower`` and ``<= upper`` (float64).

    For float32 data the lower limit is rounded up and the upper one down to float32, so the comparisons
    run in float32 (no float64 temporaries) and give the same result as in float64.
    """
    if dtype == np.float64:
        return lower, upper
    with np.errstate(over="ignore"):
        lo, hi = lower.astype(dtype), upper.astype(dtype)
    np.nextafter(lo, dtype.type(np.inf), out=lo, where=lo < lower)
    np.nextafter(hi, dtype.type(-np.inf), out=hi, where=hi > upper)
    return lo, hi


def _at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return ``values[index[p], p]`` for every column p, as float64."""
    return np.take_along_axis(values, index[np.newaxis], axis=0)[0].astype(np.float64)


def _quantile(values: np.ndarray, start: np.ndarray, k: np.ndarray, f: float) -> np.ndarray:
    """GSL ``quantile_from_sorted_data`` of the run ``values[start:start+k, p]`` of every column (k >= 1)."""
    index = f * (k - 1)
    lhs = np.floor(index).astype(np.intp)
    delta = index - lhs
    lo = _at(values, start + lhs)
    hi = _at(values, start + np.minimum(lhs + 1, k - 1))
    return (1.0 - delta) * lo + delta * hi


def _median(values: np.ndarray, start: np.ndarray, k: np.ndarray) -> np.ndarray:
    """GSL ``median_from_sorted_data`` of the run ``values[start:start+k, p]`` of every column (k >= 1)."""
    return (_at(values, start + (k - 1) // 2) + _at(values, start + k // 2)) / 2.0


def _run_mean(values: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Mean of ``values[start:end, p]`` per column (float64 sum in sorted order); NaN for an empty run.

    Overwrites ``values`` outside the runs with zeros.
    """
    position = np.arange(values.shape[0])[:, np.newaxis]
    values[(position < start) | (position >= end)] = 0
    total = values.sum(axis=0, dtype=np.float64)
    n = end - start
    return np.divide(total, n, out=np.full(total.shape, np.nan), where=n > 0)


def _clip_runs(values, count, *, nsigma, max_iter, min_keep):
    """Return the kept run ``[start, end)`` of every column of a sorted block."""
    start = np.zeros(count.shape, dtype=np.intp)
    end = count.copy()
    # A clip shortens the run and must leave min_keep values: a run of min_keep or fewer can never be clipped
    # (with min_keep or fewer frames, nothing is: the loop is skipped).
    active = np.flatnonzero(end > min_keep)
    for _ in range(max_iter):
        if active.size == 0:
            break
        sub = values if active.size == values.shape[1] else values[:, active]
        s, e = start[active], end[active]
        k = e - s
        median = _median(sub, s, k)
        sigma = 0.5 * (_quantile(sub, s, k, _Q_HIGH) - _quantile(sub, s, k, _Q_LOW))
        lower, upper = _limits_in(sub.dtype, median - nsigma * sigma, median + nsigma * sigma)
        # Sorted columns: the first kept index is the number of values below `lower`, the end index the
        # number of values <= `upper` (NaNs compare false), both confined to the current run.
        new_s = np.clip(_count(sub < lower), s, e)
        new_e = np.clip(_count(sub <= upper), new_s, e)
        accept = ((new_s != s) | (new_e != e)) & (new_e - new_s >= min_keep)
        active = active[accept]
        start[active], end[active] = new_s[accept], new_e[accept]
    return start, end


def sigma_clip_mean(
    stack,
    *,
    nsigma: float = 3.0,
    max_iter: int = 3,
    min_keep: int = 3,
    block_pixels: int = BLOCK_PIXELS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel sigma-clipped mean of a stack of frames (QuickReduce ``sigmaclipmean``).

    Per pixel: drop non-finite values and sort; up to ``max_iter`` times, with ``sigma = (q84 - q16) / 2``
    of the kept values (linearly interpolated quantiles, as GSL), keep the values inside
    ``median +- nsigma * sigma`` (limits inclusive); stop when nothing changes or when fewer than
    ``min_keep`` values would remain (that last clip is not applied). The result is the mean of the kept
    values.

    QuickReduce's C code is known to differ in one corner case that this function does not reproduce: when
    a first clip would leave fewer than 3 values, its loop still applies it before its size check. The
    documented rule (docs/masters.md, 'Combining frames': never go below ``min_keep``) is used instead.

    Parameters
    ----------
    stack : numpy.ndarray or sequence of numpy.ndarray
        Shape ``(n_frames, ny, nx)``, or ``n_frames`` 2-D arrays of one shape (memory-mapped images are
        read one row block at a time); any real dtype, NaN (or inf) = no data. Not modified.
    nsigma : float, optional
        Clipping half-width in sigma.
    max_iter : int, optional
        Maximum number of clipping iterations.
    min_keep : int, optional
        A clip that would leave fewer values is not applied, and iterating stops.
    block_pixels : int, optional
        Pixels combined at once (whole rows, at least one); the working memory is about 20 bytes per
        frame and pixel of a block (200 MB for 10 frames at the default).

    Returns
    -------
    mean : numpy.ndarray
        float32, shape ``(ny, nx)``, in the units of the input; NaN where no frame has data.
    n_used : numpy.ndarray
        int16, shape ``(ny, nx)``: number of values in the mean (0 where all are NaN).
    """
    frames, shape = _frames(stack)
    mean = np.empty(shape, dtype=np.float32)
    n_used = np.empty(shape, dtype=np.int16)
    for rows, values, count in _row_blocks(frames, shape, block_pixels):
        start, end = _clip_runs(values, count, nsigma=float(nsigma), max_iter=int(max_iter),
                                min_keep=int(min_keep))
        mean[rows] = _run_mean(values, start, end).reshape(-1, shape[1])
        n_used[rows] = (end - start).reshape(-1, shape[1])
    return mean, n_used


def median_combine(stack, *, block_pixels: int = BLOCK_PIXELS) -> np.ndarray:
    """Per-pixel median of a stack of frames, ignoring non-finite values (QuickReduce ``median``).

    Parameters
    ----------
    stack : numpy.ndarray or sequence of numpy.ndarray
        As for :func:`sigma_clip_mean`.
    block_pixels : int, optional
        Pixels combined at once.

    Returns
    -------
    numpy.ndarray
        float32, shape ``(ny, nx)``; the mean of the two middle values for an even count; NaN where no
        frame has data.
    """
    frames, shape = _frames(stack)
    out = np.full(shape, np.nan, dtype=np.float32)
    for rows, values, count in _row_blocks(frames, shape, block_pixels):
        good = count > 0
        block = np.full(count.shape, np.nan)
        block[good] = _median(values[:, good], np.zeros(int(good.sum()), dtype=np.intp), count[good])
        out[rows] = block.reshape(-1, shape[1])
    return out
