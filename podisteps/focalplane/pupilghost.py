"""Pupil-ghost templates, samples, global scale and centre (docs/reduction-steps.md, 'Pupil-ghost samples' and 'Global
pupil-ghost scale'; docs/calibrations.md, 'Pupil-ghost templates').

The ghost is a ring of extra light ``sky x P(r)`` about a centre near the common corner of OTAs 33, 34,
43, 44. A template is an image of ``P`` (dimensionless, or any multiple of it) cut out for one OTA; the
global scale fitted from samples of ``(sky, template)`` pairs is then about the sky level in ADU, and the
correction is ``data - template * scale`` (docs/reduction-steps.md, 'Subtracting the focal-plane templates').

Coordinates are 0-based pixels of the OTA frame at hand, pixel centres at integers; ghost centres may lie
outside the frame. ``scale`` is the number of full-size bin1 pixels per frame pixel (binning, or 8 x
binning for the test instrument); box sizes are given in full-size pixels, as in QuickReduce.

Decisions against QuickReduce (docs/reduction-steps.md, 'Global pupil-ghost scale'; docs/quickreduce.md, 'Pupil-ghost
fit samples'):

- the scale fit uses every sample with ``pg >= 0``: QuickReduce computed the strong-signal subset
  (``pg > 0.4 max``) but passed all samples, and its fit then dropped the ``pg == 0`` ones. Here the
  samples outside the ring (``pg == 0``) are kept on purpose: they pin the background, while the scale is
  set by the strong-signal points, which the equal-width ``pg`` bins of the clipping treat separately
  (their own sigma), so they are neither drowned nor clipped by the many weak points;
- the background may be a plane (``gradient=True``, the default) rather than a constant: a sky gradient
  across the OTAs correlates with the ring, which biases a constant-background fit;
- nothing is written (QuickReduce wrote debug files into the current directory);
- the 2-D template is rotated and cut out in one order-3 spline resampling evaluated only on the OTA grid
  (same result as ``ndimage.rotate`` of the whole template and an integer cut-out, but with sub-pixel
  centres and without rotating the full template).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage, optimize

from ..instrument.packagedata import load_toml
from ..stats import block_median, three_sigma_clip
from .fringe import box_half_width

__all__ = [
    "PG_BOX",
    "PG_SAMPLES",
    "MIN_ROTATION_DEG",
    "radial_template",
    "place_template",
    "sample_pupilghost",
    "fit_pupilghost_scale",
    "find_ghost_centre",
    "fit_ghost_centre",
    "template_values",
    "measure_profile",
    "filter_level",
    "configured_filter_level",
    "centre_guess",
    "PROFILE_RADII",
    "GENERIC_PROFILE",
    "frame_scale",
    "PupilGhostTemplateData",
    "read_pupilghost_template",
]

#: Side of the sky boxes, full-size bin1 px, and their number per OTA (docs/reduction-steps.md, 'Pupil-ghost samples').
PG_BOX = 40.0
PG_SAMPLES = 750
#: Rotations smaller than this (degrees) are skipped (docs/reduction-steps.md, 'Pupil-ghost samples').
MIN_ROTATION_DEG = 0.5
#: Clipping of the scale fit: iterations, pg bins, half-width in sigma (docs/reduction-steps.md, 'Global pupil-ghost
#: scale').
FIT_ITERATIONS = 3
FIT_BINS = 10
FIT_NSIGMA = 1.5
#: Ghost centre relative to the optical axis at rotator angle 0, full-size bin1 px: pODI from the canned
#: OTA33 centre (4182, 4155) (docs/calibrations.md, 'Pupil-ghost templates') minus the OTA33 axis (2067, 2088)
#: (docs/instrument.md, 'The focal plane on the sky'); 5x6 near the axis at the common corner of OTAs 33/34/43/44
#: (docs/reduction-steps.md, 'Pupil-ghost samples' guesses).
CENTRE_GUESS = {"podi": (2115.0, 2067.0), "odi_5x6": (0.0, 0.0)}
#: Half-width of the centre search about the guess, full-size bin1 px.
CENTRE_SEARCH = 300.0
#: Radii of QuickReduce's template profiles, full-size bin1 px (docs/calibrations.md, 'Pupil-ghost templates':
#: ``linspace(800, 4300, 140)``).
PROFILE_RADII = np.linspace(800.0, 4300.0, 140)
#: A generic ring (radius, value) to start a centre search without a template: a Gaussian of 600 px
#: sigma peaking at 2000 px, the peak radius of QuickReduce's r and i profiles (docs/calibrations.md, 'Pupil-ghost
#: templates').
GENERIC_PROFILE = (PROFILE_RADII, np.exp(-0.5 * ((PROFILE_RADII - 2000.0) / 600.0) ** 2))


def _clean(template: np.ndarray) -> np.ndarray:
    """NaN -> 0 and negatives -> 0, float32 (docs/reduction-steps.md, 'Pupil-ghost samples')."""
    out = np.nan_to_num(np.asarray(template, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(out, 0.0, None, out=out)


def _radius(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    ny, nx = shape
    return np.hypot((np.arange(nx) - centre[0])[None, :], (np.arange(ny) - centre[1])[:, None])


def radial_template(
    profile_r: np.ndarray, profile_v: np.ndarray, shape: tuple[int, int], centre: tuple[float, float]
) -> np.ndarray:
    """Ghost template of one OTA from a radial profile (rotation-invariant).

    Parameters
    ----------
    profile_r : numpy.ndarray
        Shape (k,), increasing radii, frame px (QuickReduce's ``RAWPROFILE``: ``CRVAL1 + i CD1_1``
        full-size px, divided by ``scale``).
    profile_v : numpy.ndarray
        Shape (k,): the profile, dimensionless; linearly interpolated, 0 outside ``profile_r``.
    shape : (int, int)
        (ny, nx) of the OTA frame.
    centre : (float, float)
        Ghost centre (x, y) in this OTA's frame px (may be outside the frame).

    Returns
    -------
    numpy.ndarray
        Shape ``shape``, float32, >= 0, no NaN.
    """
    return _clean(np.interp(_radius(shape, centre), profile_r, profile_v, left=0.0, right=0.0))


def place_template(
    template: np.ndarray,
    shape: tuple[int, int],
    centre: tuple[float, float],
    *,
    angle: float = 0.0,
    template_centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """Rotate a 2-D ghost template about its centre and cut it out for one OTA (docs/reduction-steps.md, 'Pupil-ghost
    samples').

    OTA pixel ``p`` takes the template value at ``template_centre + R(-angle) (p - centre)`` (order-3
    spline, 0 outside the template), so the template centre lands on the ghost centre and the pattern is
    turned by ``angle``. Rotations with ``|angle| < 0.5`` deg are skipped. Negatives are clipped to 0 and
    NaN set to 0.

    Parameters
    ----------
    template : numpy.ndarray
        Shape (my, mx): QuickReduce's ``COMBINED`` image, or any template in frame px.
    shape : (int, int)
        (ny, nx) of the OTA frame.
    centre : (float, float)
        Ghost centre (x, y) in this OTA's frame px (e.g. ``PGCNTR_X/Y`` / scale, or
        :func:`find_ghost_centre`).
    angle : float, optional
        Degrees, counter-clockwise with x to the right and y up, i.e. ``ndimage.rotate(template,
        -angle)``: QuickReduce's ``rotate(COMBINED, -(ROTSTART + mismatch))`` is
        ``angle = ROTSTART + mismatch``.
    template_centre : (float, float), optional
        Ghost centre (x, y) in the template; default the middle ``((mx - 1) / 2, (my - 1) / 2)``.

    Returns
    -------
    numpy.ndarray
        Shape ``shape``, float32, >= 0, no NaN.
    """
    matrix, offset = _transform(template.shape, centre, angle, template_centre)
    corners = np.array([[0, 0], [0, shape[1] - 1], [shape[0] - 1, 0], [shape[0] - 1, shape[1] - 1]], float)
    crop, lo = _crop(template, corners @ matrix.T + offset)
    if crop is None:
        return np.zeros(shape, np.float32)
    out = ndimage.affine_transform(crop, matrix, offset=offset - lo, output_shape=tuple(shape), order=3,
                                   mode="constant", cval=0.0)
    return _clean(out)


def _transform(template_shape, centre, angle: float, template_centre) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the template = ``matrix @ (row, col)`` of the OTA + ``offset`` (see :func:`place_template`)."""
    my, mx = template_shape
    tc = np.array(template_centre if template_centre is not None else ((mx - 1) / 2, (my - 1) / 2), float)
    a = math.radians(angle) if abs(angle) >= MIN_ROTATION_DEG else 0.0
    # R(-a) in (x, y) is [[cos, sin], [-sin, cos]], i.e. [[cos, -sin], [sin, cos]] in (y, x).
    matrix = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return matrix, tc[::-1] - matrix @ np.asarray(centre, float)[::-1]


def _crop(template: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The template rows/columns covering ``reach`` (template (row, col) points) plus a spline margin, float64
    with NaN -> 0 (only the crop is read: a memory-mapped template stays on disk); (None, lo) if empty."""
    my, mx = template.shape
    lo = np.clip(np.floor(reach.min(axis=0)).astype(int) - 4, 0, [my, mx])
    hi = np.clip(np.ceil(reach.max(axis=0)).astype(int) + 5, 0, [my, mx])
    if (hi <= lo).any():
        return None, lo
    return np.nan_to_num(np.asarray(template[lo[0]:hi[0], lo[1]:hi[1]], dtype=np.float64)), lo


def template_values(
    template: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    centre: tuple[float, float],
    *,
    angle: float = 0.0,
    template_centre: tuple[float, float] | None = None,
) -> np.ndarray:
    """The placed template of :func:`place_template` at single points (bilinear, negatives clipped to 0).

    Parameters
    ----------
    template : numpy.ndarray
        Shape (my, mx): the ``COMBINED`` template (may be memory-mapped; only the part reached is read).
    x, y : numpy.ndarray
        Shape (n,): points in this OTA's frame px.
    centre, angle, template_centre
        As for :func:`place_template`.

    Returns
    -------
    numpy.ndarray
        Shape (n,), float64, >= 0 (0 outside the template).
    """
    matrix, offset = _transform(template.shape, centre, angle, template_centre)
    points = np.column_stack([np.asarray(y, float), np.asarray(x, float)]) @ matrix.T + offset
    if not len(points):
        return np.zeros(0)
    crop, lo = _crop(template, points)
    if crop is None:
        return np.zeros(len(points))
    values = ndimage.map_coordinates(crop, (points - lo).T, order=1, mode="constant", cval=0.0)
    return np.clip(values, 0.0, None)


def sample_pupilghost(
    data: np.ndarray,
    template: np.ndarray,
    *,
    rng: np.random.Generator,
    n: int = PG_SAMPLES,
    box: float = PG_BOX,
    scale: float = 1.0,
    origin: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Sky samples of one OTA against its ghost template (docs/reduction-steps.md, 'Pupil-ghost samples', no source
    rejection).

    ``n`` box centres uniform over the frame (whole boxes inside it); per box the nanmedian of the data
    (``2 h + 1`` frame px on a side, ``h = round(box / 2 / scale)``) and the template value at the centre.
    Boxes without a finite pixel are dropped.

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx): detrended OTA, ADU; sources and bad pixels NaN.
    template : numpy.ndarray
        Shape (ny, nx): this OTA's ghost template (:func:`radial_template`, :func:`place_template`).
    rng : numpy.random.Generator
        Source of the box positions.
    n : int, optional
        Number of boxes.
    box : float, optional
        Box side, full-size bin1 px.
    scale : float, optional
        Full-size bin1 pixels per frame pixel.
    origin : (float, float), optional
        Added to x, y: the position of this OTA's pixel (0, 0) in a frame common to the OTAs pooled in
        :func:`fit_pupilghost_scale` (needed for its sky gradient), frame px.

    Returns
    -------
    numpy.ndarray
        Shape (m, 4), m <= n: ``x, y`` (box centre, frame px, plus ``origin``), ``sky`` (ADU), ``pg``.
    """
    ny, nx = data.shape
    h = box_half_width(box, scale)
    xs, ys = rng.integers(h, nx - h, n), rng.integers(h, ny - h, n)
    boxes = np.lib.stride_tricks.sliding_window_view(np.asarray(data), (2 * h + 1, 2 * h + 1))
    sel = boxes[ys - h, xs - h]
    finite = np.isfinite(sel).any(axis=(1, 2))
    sky = np.full(n, np.nan)
    sky[finite] = np.nanmedian(sel[finite], axis=(1, 2))
    rows = np.column_stack([xs + origin[0], ys + origin[1], sky, np.asarray(template)[ys, xs]])
    return rows[finite]


def _linear_fit(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(design, y, rcond=None)[0]


def _binned_keep(pg: np.ndarray, resid: np.ndarray, *, bins: int, nsigma: float) -> np.ndarray:
    """In ``bins`` equal-width pg bins keep residuals within +-nsigma sigma, sigma = (P84 - P16) / 2."""
    edges = np.linspace(pg.min(), pg.max(), bins + 1)
    which = np.clip(np.searchsorted(edges, pg, side="right") - 1, 0, bins - 1)
    keep = np.ones(pg.size, bool)
    for b in range(bins):
        inbin = which == b
        if inbin.sum() >= 3:
            p16, p84 = np.percentile(resid[inbin], [15.87, 84.13])
            keep[inbin] = np.abs(resid[inbin]) <= nsigma * 0.5 * (p84 - p16)
    return keep


def fit_pupilghost_scale(samples: np.ndarray | Sequence[np.ndarray], *, gradient: bool = True) -> tuple[float, float]:
    """Global pupil-ghost scale (docs/reduction-steps.md, 'Global pupil-ghost scale', ``PUPLGFAC``) from the pooled
    samples of the ghost OTAs.

    The sky values are pre-clipped with ``three_sigma_clip(sky, lo=0, hi=65000)``. Then three times: a
    least-squares fit ``sky = scale pg + bg (+ gx x + gy y)`` over the kept points, and in 10 equal-width
    pg bins the points with residuals beyond +-1.5 sigma (sigma = (P84 - P16) / 2 of the bin) are dropped;
    the result is a last fit over the survivors. Every sample with ``pg >= 0`` enters (see the module
    notes for why the ``pg == 0`` samples are kept).

    Parameters
    ----------
    samples : numpy.ndarray or sequence of numpy.ndarray
        Rows ``x, y, sky, pg`` (:func:`sample_pupilghost`), one array per OTA or stacked.
    gradient : bool, optional
        Fit a plane ``bg + gx x + gy y`` for the background (x, y in a common frame) instead of a constant.

    Returns
    -------
    (float, float)
        ``scale`` (ADU per template unit) and ``bg`` (ADU, at x = y = 0); both NaN with 4 or fewer
        usable samples or a template that is flat over them.
    """
    s = np.concatenate([np.asarray(a, float).reshape(-1, 4) for a in
                        ([samples] if isinstance(samples, np.ndarray) else samples)])
    x, y, sky, pg = s.T
    kept_sky = three_sigma_clip(sky, lo=0.0, hi=65000.0)
    ok = np.isfinite(s).all(axis=1) & (pg >= 0) & np.isin(sky, kept_sky)
    if ok.sum() <= 4 or np.ptp(pg[ok]) == 0:
        return math.nan, math.nan
    x0, y0 = x[ok].mean(), y[ok].mean()  # centred plane terms keep the design well conditioned
    design = np.column_stack([pg, np.ones_like(pg)] + ([x - x0, y - y0] if gradient else []))
    for _ in range(FIT_ITERATIONS):
        coef = _linear_fit(design[ok], sky[ok])
        resid = sky[ok] - design[ok] @ coef
        idx = np.flatnonzero(ok)
        ok[idx[~_binned_keep(pg[ok], resid, bins=FIT_BINS, nsigma=FIT_NSIGMA)]] = False
    coef = _linear_fit(design[ok], sky[ok])
    bg = coef[1] - (coef[2] * x0 + coef[3] * y0 if gradient else 0.0)
    return float(coef[0]), float(bg)


def find_ghost_centre(
    data: np.ndarray,
    profile_r: np.ndarray,
    profile_v: np.ndarray,
    *,
    guess: tuple[float, float],
    search_px: float,
    block: int | None = None,
) -> tuple[float, float]:
    """Ghost centre found in one OTA image: :func:`fit_ghost_centre` on its :func:`block_median` samples.

    Parameters
    ----------
    data : numpy.ndarray
        Shape (ny, nx): detrended OTA (sky plus ghost), ADU; sources and bad pixels NaN.
    profile_r, profile_v, guess, search_px
        As for :func:`fit_ghost_centre` (frame px of this OTA).
    block : int, optional
        Block size of the median image, frame px; default ``max(ny, nx) // 64`` (at least 1).

    Returns
    -------
    (float, float)
        Centre (x, y), frame px of this OTA.
    """
    values, xb, yb = block_median(data, block or max(1, max(data.shape) // 64))
    return fit_ghost_centre(values, xb, yb, profile_r, profile_v, guess=guess, search_px=search_px)


def fit_ghost_centre(
    values: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    profile_r: np.ndarray,
    profile_v: np.ndarray,
    *,
    guess: tuple[float, float],
    search_px: float,
) -> tuple[float, float]:
    """Ghost centre from binned sky samples, for frames without the flat's ``PGCNTR_X/Y`` (docs/reduction-steps.md,
    'Pupil-ghost samples').

    Instead of QuickReduce's Sobel-gradient circle search (which needs a sharp ring edge of a known
    radius), the whole radial profile is fitted: with ``P`` the profile about a trial centre, the samples
    are modelled as ``(b0 + bx x + by y)(1 + s P)``, linear in its six coefficients, which are solved for at
    each trial centre. The centre minimising the residuals is taken from a 21 x 21 grid over
    ``guess +- search_px`` and refined by a robust (soft-L1) least-squares fit inside that box. Samples of
    several OTAs are fitted together when their x, y are given in one frame (e.g. relative to the optical
    axis, which the ghost centre follows).

    Parameters
    ----------
    values : numpy.ndarray
        Shape (m,): binned sky (sky plus ghost), ADU (:func:`block_median`).
    x, y : numpy.ndarray
        Shape (m,): sample positions, frame px.
    profile_r, profile_v : numpy.ndarray
        Shape (k,): radial profile of the ghost, radii in frame px (any normalisation of ``profile_v``).
    guess : (float, float)
        Starting centre (x, y), same frame as ``x, y``.
    search_px : float
        Half-width of the search box about ``guess``, frame px.

    Returns
    -------
    (float, float)
        Centre (x, y), same frame as ``x, y``.
    """
    values, xb, yb = (np.asarray(a, float) for a in (values, x, y))
    norm = max(np.ptp(xb), np.ptp(yb), 1.0)
    u, v = (xb - xb.mean()) / norm, (yb - yb.mean()) / norm
    ref = np.median(values)

    def residuals(c):
        p = np.interp(np.hypot(xb - c[0], yb - c[1]), profile_r, profile_v, left=0.0, right=0.0)
        design = np.column_stack([np.ones_like(u), u, v, p, p * u, p * v])
        return (values - design @ _linear_fit(design, values)) / ref

    offsets = np.linspace(-search_px, search_px, 21)
    grid = [(guess[0] + dx, guess[1] + dy) for dy in offsets for dx in offsets]
    start = min(grid, key=lambda c: float(np.sum(residuals(c) ** 2)))
    f_scale = 1.4826 * np.median(np.abs(residuals(start))) or 1.0
    bounds = ([guess[0] - search_px, guess[1] - search_px], [guess[0] + search_px, guess[1] + search_px])
    fit = optimize.least_squares(residuals, start, bounds=bounds, loss="soft_l1", f_scale=f_scale,
                                 diff_step=0.05 / max(1.0, *np.abs(start)))
    return float(fit.x[0]), float(fit.x[1])


def measure_profile(
    values: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    centre: tuple[float, float],
    radii: np.ndarray,
    *,
    nsigma: float = 4.0,
) -> np.ndarray:
    """Radial ghost profile relative to the background, from binned samples of a flat (docs/calibrations.md,
    'Pupil-ghost templates').

    QuickReduce subtracted the background in polar coordinates; here background and ring are fitted
    together, linearly: ``values = b0 + bx x + by y + sum_k c_k B_k(r)`` with ``B_k`` the linear-interpolation
    (hat) functions on ``radii`` (0 outside them, so the samples inside and outside the ring pin the
    background). Two passes; the second drops samples beyond ``nsigma`` robust sigmas. The profile is
    ``c_k / b0``.

    Parameters
    ----------
    values : numpy.ndarray
        Shape (m,): binned flat (background x (1 + ghost)), any unit.
    x, y : numpy.ndarray
        Shape (m,): positions, frame px (one frame for all OTAs, e.g. relative to the optical axis).
    centre : (float, float)
        Ghost centre, same frame.
    radii : numpy.ndarray
        Shape (k,): increasing profile radii, frame px.
    nsigma : float, optional
        Rejection threshold of the second pass.

    Returns
    -------
    numpy.ndarray
        Shape (k,): the profile (dimensionless, relative to the background); NaN at radii no sample
        constrains.
    """
    values, x, y = (np.asarray(a, float) for a in (values, x, y))
    r = np.hypot(x - centre[0], y - centre[1])
    k = len(radii)
    hats = np.zeros((len(r), k))
    j = np.clip(np.searchsorted(radii, r) - 1, 0, k - 2)
    w = np.clip((r - radii[j]) / (radii[j + 1] - radii[j]), 0.0, 1.0)
    inside = (r >= radii[0]) & (r <= radii[-1])
    rows = np.flatnonzero(inside)
    hats[rows, j[inside]] = 1.0 - w[inside]
    hats[rows, j[inside] + 1] = w[inside]
    norm = max(np.ptp(x), np.ptp(y), 1.0)
    design = np.column_stack([np.ones_like(x), (x - x.mean()) / norm, (y - y.mean()) / norm, hats])
    ok = np.isfinite(values)
    for _ in range(2):
        coef = _linear_fit(design[ok], values[ok])
        resid = values - design @ coef
        sigma = 1.4826 * np.median(np.abs(resid[ok]))
        ok &= np.abs(resid) <= nsigma * sigma
    profile = coef[3:] / coef[0]
    profile[hats[ok].sum(axis=0) == 0] = np.nan
    return profile


def filter_level(header) -> int:
    """Filter-arm level of an exposure: ``n`` of the first ``FLTARMnX = 'IN'`` card (docs/reduction-steps.md,
    'Pupil-ghost samples'; docs/formats.md, 'Raw primary header').

    Raises
    ------
    ValueError
        If no ``FLTARM`` card says ``IN``.
    """
    for n in (1, 2, 3):
        if any(str(header.get(f"FLTARM{n}{slot}", "")).strip().upper() == "IN" for slot in "ABC"):
            return n
    raise ValueError("no FLTARMnX card is 'IN': the filter-arm level is unknown")


def configured_filter_level(filtername: str) -> int | None:
    """Filter-arm level of a filter from ``data/filters.toml`` (``arm = "1B"`` -> 1), None if unlisted.

    Used where no header is at hand (choosing a mastercals template at scheduling time).
    """
    arm = load_toml("filters.toml").get(filtername, {}).get("arm")
    return int(arm[0]) if arm else None


def centre_guess(layout: str, rotator_deg: float, *, scale: float = 1.0) -> tuple[float, float]:
    """Starting ghost centre relative to the optical axis, frame px: :data:`CENTRE_GUESS` turned by the
    rotator angle (counter-clockwise, the way the ghost follows the pupil; assumed for real data)."""
    ox, oy = CENTRE_GUESS[layout]
    a = math.radians(rotator_deg)
    return (ox * math.cos(a) - oy * math.sin(a)) / scale, (ox * math.sin(a) + oy * math.cos(a)) / scale


def frame_scale(shape: tuple[int, ...]) -> int:
    """Full-size bin1 px per frame px of an OTA image of ``shape`` (4096 // width: 1, 2, or 8 x binning)."""
    return max(1, 4096 // shape[-1])


@dataclass(frozen=True)
class PupilGhostTemplateData:
    """A pupil-ghost template file read for use (``combined`` may be memory-mapped: keep the file open)."""

    combined: np.ndarray
    otas: frozenset
    profile_r: np.ndarray      # frame px of the data it is applied to
    profile_v: np.ndarray
    rotangle: float


def read_pupilghost_template(hdul: fits.HDUList, *, data_scale: int) -> PupilGhostTemplateData:
    """Read QuickReduce's (or podiflow's) template for data of ``data_scale`` full-size px per px.

    Raises
    ------
    ValueError
        If the template's pixel scale differs from the data's (no resampling is done).
    """
    comb = hdul["COMBINED"]
    scale = int(comb.header.get("PGSCALE", hdul[0].header.get("BINNING", data_scale)))
    if scale != data_scale:
        raise ValueError(f"{hdul.filename()}: pupil-ghost template at {scale} full-size px per px, "
                         f"data at {data_scale}")
    prof = hdul["RAWPROFILE"]
    radii = float(prof.header["CRVAL1"]) + float(prof.header["CD1_1"]) * np.arange(prof.data.shape[0])
    otas = frozenset(int(n[3:5]) for n in str(comb.header.get("OTAORDER", "")).split(";") if n.strip())
    return PupilGhostTemplateData(comb.data, otas, radii / scale, np.nan_to_num(prof.data[:, 0].astype(float)),
                                  float(comb.header.get("ROTANGLE", 0.0)))
