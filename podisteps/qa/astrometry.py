"""Astrometry QA: ``wcs1`` (residual scatter) and ``wcs2`` (residual vectors over the focal plane)."""

from __future__ import annotations

import numpy as np

from .common import ExposureId, PlotResult, finish, new_figure, no_data, subsample
from .focalplane import focal_axes

__all__ = ["wcs_scatter", "wcs_quiver", "rms"]

#: Half-width of the wcs1 panel: this many times the residual rms, within [0.3, 3] arcsec.
SCATTER_RMS_RANGE, SCATTER_MIN, SCATTER_MAX = 5.0, 0.3, 3.0


def rms(values: np.ndarray) -> float:
    """Root mean square of the finite values (NaN for none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(np.sqrt(np.mean(v**2))) if v.size else float("nan")


def wcs_scatter(paths, ident: ExposureId, *, dra: np.ndarray, ddec: np.ndarray, scope: str = "focal plane"
                ) -> PlotResult:
    """``wcs1``: ODI minus reference positions of the matched stars, one point per star.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write (one per format).
    ident : ExposureId
        The exposure, for the title.
    dra, ddec : numpy.ndarray
        Residuals d alpha cos delta and d delta of each matched star, arcsec.
    scope : str, optional
        What the stars cover ("focal plane", "OTA 33"), for the title.

    Returns
    -------
    PlotResult
        ``counts["points"]``: the points drawn (all matched stars, also those beyond the panel's range).
    """
    dra, ddec = np.asarray(dra, float), np.asarray(ddec, float)
    r_a, r_d = rms(dra), rms(ddec)
    half = float(np.clip(SCATTER_RMS_RANGE * np.nanmax([r_a, r_d, 0.0]), SCATTER_MIN, SCATTER_MAX))
    fig = new_figure((6.5, 6.5))
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), hspace=0.05, wspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    side = fig.add_subplot(grid[1, 1], sharey=ax)
    points = ax.scatter(dra, ddec, s=6, c="tab:blue", alpha=0.6, linewidths=0)
    bins = np.linspace(-half, half, 41)
    if dra.size:
        top.hist(dra, bins=bins, color="tab:blue", alpha=0.7)
        side.hist(ddec, bins=bins, color="tab:blue", alpha=0.7, orientation="horizontal")
        ax.text(0.03, 0.97, f"N = {dra.size}\nrms $\\Delta\\alpha$ = {r_a:.3f}\"\nrms $\\Delta\\delta$ = {r_d:.3f}\"",
                transform=ax.transAxes, va="top", fontsize=8, bbox={"fc": "white", "alpha": 0.8, "lw": 0})
    else:
        no_data(ax, "no matched stars")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\Delta\alpha\,\cos\delta$ (ODI - reference) [arcsec]")
    ax.set_ylabel(r"$\Delta\delta$ (ODI - reference) [arcsec]")
    top.set_ylabel("stars [count]")
    side.set_xlabel("stars [count]")
    top.tick_params(labelbottom=False)
    side.tick_params(labelleft=False)
    n = len(points.get_offsets())
    return finish(fig, paths, ident, f"wcs1: astrometric residuals, {scope}", {"points": n})


def wcs_quiver(paths, ident: ExposureId, *, xi: np.ndarray, eta: np.ndarray, dra: np.ndarray, ddec: np.ndarray,
               outlines: dict, ota: int | None = None) -> PlotResult:
    """``wcs2``: the residual vector of each matched star at its place in the focal plane.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    xi, eta : numpy.ndarray
        Star positions, standard coordinates, arcmin.
    dra, ddec : numpy.ndarray
        Residuals, arcsec; an arrow of 1 arcsec is drawn 1/10 of the panel wide.
    outlines : dict
        OTA -> corners ``(4, 2)``, arcmin.
    ota : int, optional
        Show only this OTA.

    Returns
    -------
    PlotResult
        ``counts["arrows"]``: arrows drawn (at most :data:`~.common.MAX_POINTS`).
    """
    fig = new_figure()
    ax = fig.add_subplot()
    focal_axes(ax, outlines, ota=ota)
    keep = subsample(len(xi))
    width = abs(np.diff(ax.get_xlim())[0])
    scale = 10.0 / width  # arcsec of residual per arcmin of panel: 1" spans a tenth of the panel
    if keep.size:
        # data coordinates: an arrow towards larger xi points East (to the left on the page)
        q = ax.quiver(np.asarray(xi)[keep], np.asarray(eta)[keep], np.asarray(dra)[keep], np.asarray(ddec)[keep],
                      angles="xy", scale_units="xy", scale=scale, width=0.003, color="tab:red")
        key = max(0.05, float(np.round(3 * rms(np.hypot(dra, ddec)), 2)))
        ax.quiverkey(q, 0.85, 0.04, key, f"{key:g} arcsec", labelpos="W", coordinates="axes",
                     fontproperties={"size": 8})
    else:
        no_data(ax, "no matched stars")
    scope = "focal plane" if ota is None else f"OTA {ota:02d}"
    return finish(fig, paths, ident, f"wcs2: astrometric residual vectors, {scope}", {"arrows": int(keep.size)})
