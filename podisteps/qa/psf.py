"""Image-quality QA: ``psf`` (FWHM distribution), ``psfshape`` (ellipticity whiskers), ``seeing`` (FWHM map)."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize

from .common import ExposureId, PlotResult, finish, new_figure, no_data, subsample
from .focalplane import colorbar, coloured_points, focal_axes

__all__ = ["fwhm_distribution", "psf_shape", "seeing_map", "binned_shape"]

#: Colour range of FWHM maps: the median +- this, arcsec.
FWHM_HALF_RANGE = 0.3

#: Whisker grid: boxes across the focal plane, or across one OTA.
SHAPE_BINS_FOCAL, SHAPE_BINS_OTA = 24, 6

#: Reference ellipticities of the whisker key: the smallest at or above the 90th percentile of the boxes is
#: drawn WHISKER_BOX of a box long (so whiskers rarely overlap).
WHISKER_REFERENCES, WHISKER_BOX = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0), 0.9


def _fwhm_norm(fwhm: np.ndarray) -> Normalize:
    med = float(np.nanmedian(fwhm)) if len(fwhm) else 1.0
    return Normalize(max(0.0, med - FWHM_HALF_RANGE), med + FWHM_HALF_RANGE)


def fwhm_distribution(paths, ident: ExposureId, *, fwhm: np.ndarray, ota: np.ndarray, otas) -> PlotResult:
    """``psf``: histogram of the stars' FWHM and its median and 16-84 % range per OTA.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    fwhm : numpy.ndarray
        FWHM of each clean star, arcsec.
    ota : numpy.ndarray
        OTA of each star.
    otas : sequence of int
        The OTAs of the exposure (x axis of the right panel, in this order).

    Returns
    -------
    PlotResult
        ``counts["stars"]``: stars in the histogram.
    """
    fwhm, ota = np.asarray(fwhm, float), np.asarray(ota, int)
    fig = new_figure((9.0, 4.5))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": (1, 1.4)})
    if fwhm.size:
        med = float(np.median(fwhm))
        hi = float(np.percentile(fwhm, 99)) * 1.1
        left.hist(fwhm, bins=np.linspace(0, hi, 40), color="tab:blue", alpha=0.8)
        left.axvline(med, color="k", lw=1)
        left.text(0.97, 0.95, f"median {med:.2f}\"\nN = {fwhm.size}", transform=left.transAxes, ha="right",
                  va="top", fontsize=8)
        for i, number in enumerate(otas):
            values = fwhm[ota == number]
            if values.size:
                lo, mid, up = np.percentile(values, [16, 50, 84])
                right.errorbar([i], [mid], yerr=[[mid - lo], [up - mid]], fmt="o", color="tab:blue", ms=4)
        right.axhline(med, color="k", lw=0.8, ls="--")
    else:
        no_data(left, "no clean stars")
    left.set_xlabel("FWHM [arcsec]")
    left.set_ylabel("stars [count]")
    right.set_xticks(range(len(otas)), [f"{o:02d}" for o in otas], rotation=90, fontsize=7)
    right.set_xlim(-0.7, len(otas) - 0.3)
    right.set_xlabel("OTA [xy position]")
    right.set_ylabel("FWHM, median and 16-84 % [arcsec]")
    fig.subplots_adjust(top=0.85, bottom=0.18, wspace=0.3)
    return finish(fig, paths, ident, "psf: FWHM of clean stars", {"stars": int(fwhm.size)})


def binned_shape(xi, eta, ell, pa, fwhm, *, extent: tuple, bins: int, min_stars: int = 2) -> tuple:
    """Average star shapes in a grid of boxes (ellipticity as a spin-2 vector, so angles average right).

    Parameters
    ----------
    xi, eta : numpy.ndarray
        Positions, arcmin.
    ell, pa : numpy.ndarray
        Ellipticity ``1 - b/a`` and major-axis position angle (North through East), degrees.
    fwhm : numpy.ndarray
        FWHM, arcsec.
    extent : tuple
        ``(xmin, xmax, ymin, ymax)`` of the grid, arcmin.
    bins : int
        Boxes per axis.
    min_stars : int, optional
        Boxes with fewer stars are left out.

    Returns
    -------
    tuple of numpy.ndarray
        ``(xi, eta, ell, pa, fwhm)`` per box kept: mean position, ellipticity of the mean shape vector,
        its position angle (degrees) and the mean FWHM.
    """
    phi = np.radians(pa) * 2
    ranges = [sorted(extent[:2]), sorted(extent[2:])]
    sums = [np.histogram2d(xi, eta, bins=bins, range=ranges, weights=w)[0]
            for w in (None, xi, eta, ell * np.cos(phi), ell * np.sin(phi), fwhm)]
    n, rest = sums[0], sums[1:]
    keep = n >= max(1, min_stars)
    mx, my, e1, e2, mf = (s[keep] / n[keep] for s in rest)
    return mx, my, np.hypot(e1, e2), np.degrees(np.arctan2(e2, e1) / 2) % 180.0, mf


def psf_shape(paths, ident: ExposureId, *, xi, eta, ell, pa, fwhm, outlines: dict, ota: int | None = None
              ) -> PlotResult:
    """``psfshape``: whiskers of the mean ellipticity and orientation in boxes, coloured by FWHM.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    xi, eta : numpy.ndarray
        Star positions, arcmin.
    ell, pa, fwhm : numpy.ndarray
        Ellipticity ``1 - b/a``, position angle (North through East, degrees) and FWHM (arcsec).
    outlines : dict
        OTA -> corners, arcmin.
    ota : int, optional
        Show only this OTA (finer boxes).

    Returns
    -------
    PlotResult
        ``counts["whiskers"]`` (boxes drawn) and ``counts["stars"]``.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    focal_axes(ax, outlines, ota=ota)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    n_stars = len(xi)
    bins = SHAPE_BINS_FOCAL if ota is None else SHAPE_BINS_OTA
    binned = binned_shape(np.asarray(xi), np.asarray(eta), np.asarray(ell), np.asarray(pa), np.asarray(fwhm),
                          extent=(x0, x1, y0, y1), bins=bins, min_stars=2 if ota is None else 1) if n_stars else None
    if binned is not None and len(binned[2]):
        bx, by, be, bpa, bf = binned
        reference = next((r for r in WHISKER_REFERENCES if r >= np.percentile(be, 90)), WHISKER_REFERENCES[-1])
        key = abs(x1 - x0) / bins * WHISKER_BOX
        length = key * be / reference
        dx, dy = np.sin(np.radians(bpa)) * length / 2, np.cos(np.radians(bpa)) * length / 2
        segments = np.stack([np.column_stack([bx - dx, by - dy]), np.column_stack([bx + dx, by + dy])], axis=1)
        lines = LineCollection(segments, cmap="viridis", norm=_fwhm_norm(fwhm), linewidths=2)
        lines.set_array(bf)
        ax.add_collection(lines)
        colorbar(fig, lines, ax, "mean FWHM [arcsec]")
        kx, ky = x0 + 0.08 * (x1 - x0), y0 + 0.04 * (y1 - y0)  # bottom left
        ax.plot([kx - key / 2, kx + key / 2], [ky, ky], color="k", lw=2)
        ax.text(kx - 0.6 * key, ky, f"e = {reference:g}", ha="left", va="center", fontsize=8)
        n_whiskers = len(segments)
    else:  # no star, or no box with enough of them (few stars spread over the focal plane)
        no_data(ax, "no clean stars" if not n_stars else f"too few clean stars per box ({n_stars} in all)")
        n_whiskers = 0
    scope = "focal plane" if ota is None else f"OTA {ota:02d}"
    return finish(fig, paths, ident, f"psfshape: ellipticity and orientation of clean stars, {scope}",
                  {"whiskers": n_whiskers, "stars": n_stars})


def seeing_map(paths, ident: ExposureId, *, xi, eta, fwhm, outlines: dict, ota: int | None = None) -> PlotResult:
    """``seeing``: each clean star at its place, coloured by its FWHM (median +- 0.3 arcsec).

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    xi, eta : numpy.ndarray
        Star positions, arcmin.
    fwhm : numpy.ndarray
        FWHM, arcsec.
    outlines : dict
        OTA -> corners, arcmin.
    ota : int, optional
        Show only this OTA.

    Returns
    -------
    PlotResult
        ``counts["points"]``: stars drawn.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    focal_axes(ax, outlines, ota=ota)
    fwhm = np.asarray(fwhm, float)
    n = coloured_points(fig, ax, xi, eta, fwhm, subsample(len(xi)), cmap="viridis", norm=_fwhm_norm(fwhm),
                        label="FWHM [arcsec]", empty="no clean stars", s=10, linewidths=0)
    if n:
        ax.text(0.02, 0.02, f"median FWHM {np.median(fwhm):.2f}\"", transform=ax.transAxes, fontsize=8)
    scope = "focal plane" if ota is None else f"OTA {ota:02d}"
    return finish(fig, paths, ident, f"seeing: FWHM of clean stars, {scope}", {"points": n})
