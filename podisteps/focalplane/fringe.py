"""Fringe measurement, global fringe scale and fringe templates (docs/reduction-steps.md, 'Fringe amplitudes' and
'Global fringe scale'; docs/calibrations.md, 'Fringe templates and vectors').

The fringe template is dimensionless, ``(frame - sky) / sky`` (docs/calibrations.md, 'Fringe templates and vectors'), so
the fitted scale is about the sky level in ADU and the correction is ``data - template * scale``
(docs/reduction-steps.md, 'Subtracting the focal-plane templates'). The scale is measured with the Snodgrass & Carry
(2013) method: the bright-minus-dark difference of the data over the same difference of the template, at the two ends of
the fringe vectors of the ``fringevectors__<FILTER>__OTAnn.reg`` files.

Coordinates: region files hold 1-based full-size bin1 OTA pixels; the functions here work in 0-based
pixels of the OTA frame at hand (bin2 or the scaled-down test instrument: ``scale`` full-size pixels per
frame pixel), with pixel centres at integers. Frame pixel ``j`` covers full-size bin1 pixels
``[j * scale, (j + 1) * scale)``, so a 1-based full-size coordinate ``v`` is at frame position
``(v - 0.5) / scale - 0.5`` (``v - 1`` at bin1), as :mod:`podisteps.detrend.masks` maps regions.

All functions are pure: nothing is read except a region file handed in, nothing is written.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

from ..detrend.masks import RegionFile, VectorRegion, read_bpm_regions
from ..stats import block_median, three_sigma_clip

__all__ = [
    "FRINGE_BOX",
    "FRINGE_COLUMNS",
    "NOMINAL_SKY_RATE",
    "WIENER_THRESHOLD",
    "box_half_width",
    "box_medians",
    "fringe_vectors_from_regions",
    "fringe_amplitudes",
    "fringe_scale",
    "fringe_template",
    "reject_bright_sky",
    "source_mask",
    "sky_plane",
    "denoise_template",
]

#: Side of the boxes at the ends of a fringe vector, full-size bin1 px (docs/reduction-steps.md, 'Fringe amplitudes':
#: 20x20, +-10 px).
FRINGE_BOX = 20.0

#: Columns of the per-vector rows returned by :func:`fringe_amplitudes` (QuickReduce's order).
FRINGE_COLUMNS = ("data_bright", "data_dark", "tmpl_bright", "tmpl_dark", "d_data", "d_tmpl", "scale")

#: :func:`denoise_template` drops a frequency whose smoothed power is below this multiple of the noise power.
WIENER_THRESHOLD = 3.0

#: Nominal sky count rates, ADU/s per full-size px (``podi_fringing.avg_sky_countrates``, docs/reduction-steps.md,
#: 'Global fringe scale').
NOMINAL_SKY_RATE = {"odi_i": 3.8, "odi_z": 4.0}


def _frame_coordinate(value, scale: float):
    """1-based full-size bin1 coordinate(s) -> 0-based frame pixel coordinate(s) (pixel centres at integers)."""
    return (np.asarray(value, dtype=float) - 0.5) / scale - 0.5


def fringe_vectors_from_regions(region_file: RegionFile | str | os.PathLike, *, scale: float = 1.0) -> np.ndarray:
    """Dark and bright ends of the fringe vectors of a region file, in frame pixels.

    Each ``vector(x, y, L, theta)`` (``# vector`` or bare, theta in degrees counter-clockwise) runs from a
    dark point ``(x, y)`` to a bright point ``(x + L cos theta, y + L sin theta)`` (docs/reduction-steps.md, 'Fringe
    amplitudes'). Boxes and other regions in the file are ignored.

    Parameters
    ----------
    region_file : RegionFile or path
        A parsed region file (:func:`podisteps.detrend.masks.parse_ds9_regions`) or the path of one.
    scale : float, optional
        Full-size bin1 pixels per frame pixel (binning, or 8 x binning for the test instrument).

    Returns
    -------
    numpy.ndarray
        Shape (n, 4), float: ``x_dark, y_dark, x_bright, y_bright`` in 0-based frame pixels.
    """
    if not isinstance(region_file, RegionFile):
        region_file = read_bpm_regions(region_file)
    vectors = [r for r in region_file.regions if isinstance(r, VectorRegion)]
    out = np.empty((len(vectors), 4))
    for row, v in zip(out, vectors):
        angle = math.radians(v.angle)
        row[:] = v.x, v.y, v.x + v.length * math.cos(angle), v.y + v.length * math.sin(angle)
    return _frame_coordinate(out, scale)


def box_medians(image: np.ndarray, x: np.ndarray, y: np.ndarray, half: int) -> np.ndarray:
    """nanmedian of ``image[y-half : y+half+1, x-half : x+half+1]`` around each rounded point (NaN if empty).

    Parameters
    ----------
    image : numpy.ndarray
        Shape (ny, nx).
    x, y : numpy.ndarray
        Shape (n,): box centres, frame px.
    half : int
        Box half-width, frame px.

    Returns
    -------
    numpy.ndarray
        Shape (n,), float.
    """
    ny, nx = image.shape
    out = np.full(len(x), np.nan)
    for i, (xi, yi) in enumerate(zip(np.rint(x).astype(int), np.rint(y).astype(int))):
        box = image[max(yi - half, 0):min(yi + half + 1, ny), max(xi - half, 0):min(xi + half + 1, nx)]
        if box.size and np.isfinite(box).any():
            out[i] = np.nanmedian(box)
    return out


def box_half_width(box: float, scale: float) -> int:
    """Half-width in frame px of a box of ``box`` full-size px: ``round(box / 2 / scale)``, at least 1."""
    return max(1, round(box / (2.0 * scale)))


def fringe_amplitudes(
    data: np.ndarray,
    template: np.ndarray,
    vectors: np.ndarray,
    *,
    box: float = FRINGE_BOX,
    scale: float = 1.0,
) -> np.ndarray:
    """Per-vector fringe amplitudes of one OTA: the small measurement the global fit reads (docs/reduction-steps.md,
    'Fringe amplitudes').

    Around each end of each vector the nanmedian of a square box is taken in the data and in the template
    (``2 h + 1`` frame px on a side about the nearest pixel, ``h = round(box / 2 / scale)``, at least 1;
    21x21 at bin1 where QuickReduce took 20x20). ``scale = (data_bright - data_dark) / (tmpl_bright -
    tmpl_dark)``. Vectors with either difference zero or not finite (an end off the frame or fully masked)
    are dropped.

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx): the detrended OTA, ADU; masked pixels NaN.
    template : numpy.ndarray
        Shape (ny, nx): the fringe template of this OTA, dimensionless.
    vectors : numpy.ndarray
        Shape (n, 4): ``x_dark, y_dark, x_bright, y_bright`` frame px (:func:`fringe_vectors_from_regions`).
    box : float, optional
        Box side, full-size bin1 px.
    scale : float, optional
        Full-size bin1 pixels per frame pixel.

    Returns
    -------
    numpy.ndarray
        Shape (m, 7), m <= n, float: columns :data:`FRINGE_COLUMNS`; ``scale`` in ADU per template unit.
    """
    vectors = np.asarray(vectors, dtype=float).reshape(-1, 4)
    half = box_half_width(box, scale)
    xd, yd, xb, yb = vectors.T
    db, dd = box_medians(data, xb, yb, half), box_medians(data, xd, yd, half)
    tb, td = box_medians(template, xb, yb, half), box_medians(template, xd, yd, half)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = np.column_stack([db, dd, tb, td, db - dd, tb - td, (db - dd) / (tb - td)])
    keep = np.isfinite(rows).all(axis=1) & (rows[:, 4] != 0) & (rows[:, 5] != 0)
    return rows[keep]


def fringe_scale(rows: np.ndarray | Sequence[np.ndarray]) -> tuple[float, float]:
    """Global fringe scale of an exposure (docs/reduction-steps.md, 'Global fringe scale'): ``FRNG_SCL`` and
    ``FRNG_STD``.

    Parameters
    ----------
    rows : numpy.ndarray or sequence of numpy.ndarray
        Per-vector rows (m, 7) of :func:`fringe_amplitudes`, one array per OTA (guide OTAs already left
        out by the caller) or already stacked.

    Returns
    -------
    (float, float)
        Median and standard deviation of ``three_sigma_clip(scales, lo=0, hi=1e9)``, ADU per template
        unit; both NaN when no scale survives (QuickReduce writes -1 then).
    """
    parts = [np.asarray(r, dtype=float).reshape(-1, len(FRINGE_COLUMNS)) for r in
             ([rows] if isinstance(rows, np.ndarray) else rows)]
    scales = np.concatenate(parts)[:, -1] if parts else np.empty(0)
    kept = three_sigma_clip(scales, lo=0.0, hi=1e9)
    if kept.size == 0:
        return math.nan, math.nan
    return float(np.median(kept)), float(np.std(kept))


def fringe_template(
    frames: Sequence[np.ndarray],
    skies: Sequence[float],
    masks: Sequence[np.ndarray | None],
) -> np.ndarray:
    """Fringe template of one OTA from science frames (docs/calibrations.md, 'Fringe templates and vectors').

    ``nanmedian`` over the frames of ``(data - sky) / sky`` with the masked pixels (sources, bad pixels)
    set to NaN. Frames with a bright sky should be left out first (:func:`reject_bright_sky`).

    Parameters
    ----------
    frames : sequence of numpy.ndarray
        Detrended frames of the same OTA, each (ny, nx), ADU.
    skies : sequence of float or numpy.ndarray
        Sky of each frame, ADU, > 0: a level (``SKY_MEDI``, QuickReduce) or a (ny, nx) map such as
        :func:`sky_plane` (which keeps a sky gradient out of the template).
    masks : sequence of numpy.ndarray or None
        Per frame a bool array (ny, nx), True where the pixel is excluded (sources), or None.

    Returns
    -------
    numpy.ndarray
        Shape (ny, nx), float32, dimensionless; NaN where every frame is masked.
    """
    if not len(frames) == len(skies) == len(masks) or not len(frames):
        raise ValueError("fringe_template needs the same number (> 0) of frames, skies and masks")
    stack = np.empty((len(frames), *np.shape(frames[0])), dtype=np.float32)
    for layer, frame, sky, mask in zip(stack, frames, skies, masks):
        if not np.all(np.asarray(sky) > 0):
            raise ValueError("the sky must be > 0 everywhere")
        layer[:] = (np.asarray(frame, dtype=np.float64) - sky) / sky
        if mask is not None:
            layer[np.asarray(mask, dtype=bool)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": such pixels stay NaN
        return np.nanmedian(stack, axis=0).astype(np.float32)


def reject_bright_sky(sky_rates: np.ndarray | Sequence[float], nominal: float, *, factor: float = 2.0) -> np.ndarray:
    """Frames dark enough for a fringe template (docs/reduction-steps.md, 'Global fringe scale'; docs/calibrations.md,
    'Fringe templates and vectors'): sky rate <= ``factor`` x nominal.

    Parameters
    ----------
    sky_rates : array-like
        Shape (n,): sky count rate of each frame, ADU/s per full-size px (sky / EXPTIME / scale**2).
    nominal : float
        Nominal rate of the filter, same unit (:data:`NOMINAL_SKY_RATE`).
    factor : float, optional
        Frames above ``factor * nominal`` are rejected.

    Returns
    -------
    numpy.ndarray
        Shape (n,), bool: True for the frames to keep (finite rates only).
    """
    rates = np.asarray(sky_rates, dtype=float)
    return np.isfinite(rates) & (rates <= factor * nominal)


def source_mask(data: np.ndarray, *, nsigma: float = 3.0, grow: int = 2, block: int = 16,
                binning: int = 1) -> np.ndarray:
    """Pixels of sources (and their wings) to leave out of a fringe template (docs/calibrations.md, 'Fringe templates
    and vectors').

    A pixel is a source pixel when it lies more than ``nsigma`` robust sigmas above the local sky (the
    median of its ``block x block`` block, interpolated); the mask is then grown by ``grow`` px.
    QuickReduce ran SExtractor; a threshold mask suffices here because the template is a median.

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx), ADU; NaN where undefined.
    nsigma : float, optional
        Threshold, robust sigmas (1.4826 x MAD of the pixel-to-block-median residuals).
    grow : int, optional
        Dilation of the mask, px.
    block : int, optional
        Block side of the local sky, px (of the binned image when ``binning > 1``).
    binning : int, optional
        Detect on ``binning x binning`` block means (the sides must be multiples of it): at full size one
        pixel's noise hides a star's halo at 1 % of the sky, which a fringe template would keep.

    Returns
    -------
    numpy.ndarray
        Shape (ny, nx), bool: True on source pixels.
    """
    if binning > 1:
        ny, nx = data.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
            binned = np.nanmean(np.asarray(data, np.float32).reshape(ny // binning, binning, nx // binning, binning),
                                axis=(1, 3))
        coarse = source_mask(binned, nsigma=nsigma, grow=grow, block=block)
        return np.repeat(np.repeat(coarse, binning, axis=0), binning, axis=1)
    ny, nx = data.shape
    by, bx = max(1, ny // block), max(1, nx // block)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks
        local = np.nanmedian(data[:by * block, :bx * block].reshape(by, block, bx, block), axis=(1, 3))
    local = np.where(np.isfinite(local), local, np.nanmedian(local))
    sky = ndimage.zoom(local, (ny / by, nx / bx), order=1, mode="nearest", grid_mode=True)
    resid = data - sky
    sigma = 1.4826 * np.nanmedian(np.abs(resid))
    mask = np.nan_to_num(resid, nan=0.0) > nsigma * sigma
    return ndimage.binary_dilation(mask, iterations=grow) if grow > 0 else mask


def sky_plane(data: np.ndarray, mask: np.ndarray | None = None, *, block: int = 16) -> np.ndarray:
    """Least-squares plane through the block medians of an OTA: its sky with the gradient, ADU.

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx), ADU; NaN where undefined.
    mask : numpy.ndarray, optional
        Shape (ny, nx), bool: pixels to leave out (sources).
    block : int, optional
        Block side, px.

    Returns
    -------
    numpy.ndarray
        Shape (ny, nx), float32: ``a + b x + c y``.
    """
    clean = np.where(mask, np.nan, data) if mask is not None else data
    values, x, y = block_median(clean, block)
    design = np.column_stack([np.ones_like(x), x, y])
    coef = np.linalg.lstsq(design, values, rcond=None)[0]
    ny, nx = data.shape
    return (coef[0] + coef[1] * np.arange(nx)[None, :] + coef[2] * np.arange(ny)[:, None]).astype(np.float32)


def denoise_template(
    template: np.ndarray,
    *,
    threshold: float = WIENER_THRESHOLD,
    spectrum_smooth: float = 1.0,
    noise_frequency: float = 0.25,
    iterations: int = 3,
    pad_fraction: int = 8,
    binning: int = 1,
) -> np.ndarray:
    """Wiener filtering of a fringe template: keeps the fringes at full amplitude, drops most of the noise.

    Fringes are a few narrow peaks in the power spectrum (wavelengths of hundreds of full-size px), the
    noise of a median of a few frames is white. With ``P`` the power spectrum smoothed over
    ``spectrum_smooth`` frequency bins and ``N`` the white-noise power (from the median power above
    ``noise_frequency``, divided by ln 2, the median of an exponential), each frequency is weighted by
    ``W = clip(1 - threshold N / P, 0, 1)``. Masked pixels (NaN) are filled with the filtered image and the
    filter applied again, ``iterations`` times in all, so holes leave no ringing. The result is the filtered
    image everywhere: pixels masked in every frame (under a star in each) get the fringes too, rather than
    no correction. A Gaussian smoothing instead (QuickReduce has none) costs fringe amplitude at the noise level
    it reaches: ``exp(-2 (pi sigma / L)^2)`` of a wave of wavelength ``L``.

    Parameters
    ----------
    template : numpy.ndarray
        Shape (ny, nx), dimensionless (:func:`fringe_template`); NaN where undefined.
    threshold : float, optional
        Frequencies whose smoothed power is below ``threshold`` x the noise power are dropped; at twice
        that, half is kept.
    spectrum_smooth : float, optional
        Gaussian sigma of the power-spectrum smoothing, frequency bins (1 / OTA side).
    noise_frequency : float, optional
        Frequencies above this, cycles per frame px, measure the noise power (fringes lie far below).
    iterations : int, optional
        Filter passes (the first fills the holes with 0).
    pad_fraction : int, optional
        The image is mirrored by ``1 / pad_fraction`` of its side on each edge before the transform, so
        the jump where the periodic transform wraps around lies outside it (less ringing at the edges).
    binning : int, optional
        Filter the ``binning x binning`` block means and interpolate the result back (cubic): fringes are
        far coarser than 8 full-size px, so full-size OTAs are filtered at that scale at 1/64 of the cost.
        The sides must be multiples of ``binning``.

    Returns
    -------
    numpy.ndarray
        Shape (ny, nx), float32, finite (all NaN in, all NaN out).
    """
    if binning > 1:
        ny, nx = template.shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN blocks stay NaN (filled below)
            binned = np.nanmean(np.asarray(template, np.float32).reshape(ny // binning, binning, nx // binning,
                                                                         binning), axis=(1, 3))
        coarse = denoise_template(binned, threshold=threshold, spectrum_smooth=spectrum_smooth,
                                  noise_frequency=noise_frequency, iterations=iterations, pad_fraction=pad_fraction)
        return ndimage.zoom(coarse, binning, order=3, mode="reflect", grid_mode=True).astype(np.float32)
    valid = np.isfinite(template)
    if not valid.any():
        return np.asarray(template, np.float32)
    level = float(np.mean(template[valid]))
    pad = [(n // pad_fraction, n // pad_fraction) for n in template.shape]
    inner = tuple(slice(p, p + n) for (p, _), n in zip(pad, template.shape))
    shape = tuple(n + 2 * p for (p, _), n in zip(pad, template.shape))
    estimate = np.zeros(template.shape, np.float32)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    noise_region = np.hypot(kx, ky) > noise_frequency
    for _ in range(iterations):
        filled = np.pad(np.where(valid, template - level, estimate).astype(np.float32), pad, mode="reflect")
        spectrum = sfft.rfft2(filled)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        noise = float(np.median(power[noise_region])) / math.log(2.0)
        smooth = ndimage.gaussian_filter(power, spectrum_smooth, mode=("wrap", "mirror"))
        with np.errstate(divide="ignore", invalid="ignore"):
            weight = np.clip(1.0 - threshold * noise / smooth, 0.0, 1.0)
        estimate = sfft.irfft2(spectrum * np.nan_to_num(weight), s=shape)[inner].astype(np.float32)
    return estimate + np.float32(level)
