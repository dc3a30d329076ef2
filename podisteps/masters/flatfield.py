"""Flat-field normalisation (docs/masters.md, 'Flat', ``podi_makeflatfield.normalize_flatfield``).

A flat frame (all OTAs of one exposure, bias and dark subtracted) is divided by one level for the whole
focal plane: the clipped median of the 8x8-binned means of the layout's normalisation OTAs for the filter
(:meth:`podisteps.instrument.Layout.flat_normalisation_otas`). Pixels of the normalised flat below 0.1
become NaN (flagged ``LOWFLAT``). The flat's primary ``GAIN`` is the NGAIN-weighted mean gain of the
normalisation OTAs.
"""

from __future__ import annotations

import numpy as np

from ..io.mapped import release_pages

__all__ = ["flat_level", "normalise_flat", "flat_gain"]

#: QuickReduce's initial acceptance range for binned flat values, ADU.
_INITIAL_RANGE = (-1e5, 1e6)


def _binned_means(frame: np.ndarray, binning: int) -> np.ndarray:
    """Means of ``binning x binning`` blocks (float64, flattened); a block with any NaN is NaN.

    Rows and columns beyond a multiple of ``binning`` are ignored (OTA frames are multiples of 8). The pages of a
    frame memory-mapped read-only are released afterwards (:func:`podisteps.io.mapped.release_pages`), so that
    averaging many OTAs holds one at a time.
    """
    ny, nx = (s - s % binning for s in frame.shape)
    blocks = np.asarray(frame)[:ny, :nx].reshape(ny // binning, binning, nx // binning, binning)
    means = blocks.mean(axis=(1, 3), dtype=np.float64).ravel()  # float64 sums, no float64 copy of the frame
    release_pages(frame)
    return means


def flat_level(otas: dict, norm_otas, *, binning: int = 8, iterations: int = 3) -> float:
    """Normalisation level of a flat frame: clipped median of binned means of the normalisation OTAs.

    Each OTA in ``norm_otas`` is averaged in ``binning x binning`` blocks; blocks with NaN are dropped.
    Then ``iterations`` times: take the values inside the range (first ``[-1e5, 1e6]``), compute their
    median m and standard deviation s, and set the range to ``[m - 2 s, m + 3 s]``. The level is the last
    median. (QuickReduce uses open ranges, which become empty for a noiseless flat; for real data the
    difference does not matter.)

    Parameters
    ----------
    otas : dict
        OTA number -> 2-D OTA frame (ADU, bias and dark subtracted, NaN = no data).
    norm_otas : iterable of int
        OTAs that define the level; those missing from ``otas`` are skipped.
    binning : int, optional
        Block size, pixels.
    iterations : int, optional
        Clipping iterations.

    Returns
    -------
    float
        Level in ADU.

    Raises
    ------
    ValueError
        If no normalisation OTA has a finite block, or the level is not positive (QuickReduce then used
        1.0 silently; a flat without signal is an error here).
    """
    norm_otas = tuple(norm_otas)
    used = [o for o in norm_otas if o in otas]
    values = np.concatenate([_binned_means(otas[o], binning) for o in used]) if used else np.empty(0)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError(f"no finite {binning}x{binning} blocks in normalisation OTAs {sorted(norm_otas)}")
    lo, hi = _INITIAL_RANGE
    for _ in range(iterations):
        inside = values[(values >= lo) & (values <= hi)]
        if inside.size == 0:
            raise ValueError(f"flat level: no {binning}x{binning} block inside [{lo:g}, {hi:g}] ADU")
        level, std = float(np.median(inside)), float(np.std(inside))
        lo, hi = level - 2.0 * std, level + 3.0 * std
    if not level > 0:
        raise ValueError(f"flat level {level:g} ADU is not positive: not a flat field?")
    return level


def normalise_flat(otas: dict, level: float, *, minimum: float = 0.1) -> tuple[dict, dict]:
    """Divide every OTA of a flat frame by ``level``; normalised values below ``minimum`` become NaN.

    Parameters
    ----------
    otas : dict
        OTA number -> 2-D OTA frame (ADU). Not modified.
    level : float
        Normalisation level (ADU), from :func:`flat_level`.
    minimum : float, optional
        Smallest valid normalised value.

    Returns
    -------
    normalised : dict
        OTA number -> new float32 array (dimensionless, ~1).
    lowflat : dict
        OTA number -> bool array, True where a defined pixel fell below ``minimum`` (the ``LOWFLAT`` bit of
        :data:`podisteps.maskbits.MASK_BITS`); pixels that were NaN already are not flagged.
    """
    normalised, lowflat = {}, {}
    for ota, frame in otas.items():
        flat = np.asarray(frame, dtype=np.float32) / np.float32(level)
        low = flat < minimum
        flat[low] = np.nan
        normalised[ota], lowflat[ota] = flat, low
    return normalised, lowflat


def flat_gain(gains: dict, norm_otas) -> float:
    """NGAIN-weighted mean gain of the normalisation OTAs (the flat's primary ``GAIN``).

    Parameters
    ----------
    gains : dict
        OTA number -> ``(GAIN, NGAIN)``: mean cell gain (e-/ADU) of the OTA and the number of cells in it.
    norm_otas : iterable of int
        OTAs that enter the mean; OTAs missing from ``gains``, with ``NGAIN <= 0`` or a non-finite gain are
        skipped.

    Returns
    -------
    float
        ``sum(GAIN * NGAIN) / sum(NGAIN)`` in e-/ADU, or -1 if no OTA qualifies (QuickReduce's "unknown",
        which :func:`podisteps.detrend.calibrate.flat_gain` ignores).
    """
    pairs = [gains[o] for o in norm_otas if o in gains]
    pairs = [(float(g), float(n)) for g, n in pairs if n > 0 and np.isfinite(g)]
    weight = sum(n for _, n in pairs)
    return sum(g * n for g, n in pairs) / weight if weight > 0 else -1.0
