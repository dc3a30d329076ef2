"""Photometry QA: ``photZP[_init]`` (zero point against magnitude), ``photZP_map[_init]`` (zero point over the
focal plane) and ``autophotflat`` (the photometric flat of ``-autophotflat`` over the focal plane)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import Normalize

from .common import ExposureId, PlotResult, finish, new_figure, no_data, subsample
from .focalplane import colorbar, coloured_points, focal_axes

__all__ = ["zp_magnitude", "zp_map", "photflat_map"]

#: ``photZP`` ranges: zero point median +- ZP_HALF_RANGE; reference magnitudes those of the stars +- MAG_PAD,
#: at least MAG_RANGE (mag).
ZP_HALF_RANGE, MAG_RANGE, MAG_PAD = 0.5, (14.0, 20.0), 0.3

#: ``photZP_map`` colour range: median +- this, mag.
MAP_HALF_RANGE = 0.2

#: ``autophotflat`` colour range: +- the largest offset of the map, at least this, mag.
FLAT_MIN_HALF_RANGE = 0.01


def _title(name: str, what: str, calibration: str) -> str:
    return f"{name}: {what}" + (f"\n{calibration}" if calibration else "")


def zp_magnitude(paths, ident: ExposureId, *, refmag, zp, zp_err, used, level: tuple, refmag_label: str,
                 name: str = "photZP", calibration: str = "") -> PlotResult:
    """``photZP``: each calibration star's zero point against its reference magnitude, with a histogram.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    refmag, zp, zp_err : numpy.ndarray
        Reference magnitude, zero point and its error of each star, mag.
    used : numpy.ndarray
        Bool, the star entered the final zero point.
    level : tuple
        ``(zp, p16, p84)`` of the exposure, mag (``p16``/``p84`` may be None); drawn as a line and band.
    refmag_label : str
        Name of the reference magnitude (``SDSS_MAG_R``).
    name : str, optional
        Plot name on the title (``photZP_init`` for the first calibration of ``-autophotflat``).
    calibration : str, optional
        Which calibration this is, a title line of its own ("" for the final one).

    Returns
    -------
    PlotResult
        ``counts["points"]`` (all stars) and ``counts["used"]``.
    """
    refmag, zp, zp_err = (np.asarray(v, float) for v in (refmag, zp, zp_err))
    used = np.asarray(used, bool)
    fig = new_figure((8.0, 5.5))
    ax, hist = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": (4, 1), "wspace": 0.05})
    center, p16, p84 = level
    if zp.size:
        ax.errorbar(refmag[~used], zp[~used], yerr=zp_err[~used], fmt=".", color="0.65", ms=4, lw=0.5,
                    label="not used")
        ax.errorbar(refmag[used], zp[used], yerr=zp_err[used], fmt=".", color="tab:blue", ms=4, lw=0.5,
                    label="used")
        if p16 is not None and p84 is not None:
            ax.axhspan(p16, p84, color="tab:orange", alpha=0.2, label="16-84 %")
        ax.axhline(center, color="tab:orange", lw=1.2, label=f"ZP = {center:.3f}")
        ax.legend(loc="lower left", fontsize=8)
        hist.hist(zp[used], bins=np.linspace(center - ZP_HALF_RANGE, center + ZP_HALF_RANGE, 41),
                  orientation="horizontal", color="tab:blue", alpha=0.8)
        hist.axhline(center, color="tab:orange", lw=1.2)
        finite = refmag[np.isfinite(refmag)]
        ax.set_xlim(finite.min(initial=MAG_RANGE[0]) - MAG_PAD, finite.max(initial=MAG_RANGE[1]) + MAG_PAD)
        ax.set_ylim(center - ZP_HALF_RANGE, center + ZP_HALF_RANGE)
    else:
        no_data(ax, "no calibration stars")
    ax.set_xlabel(f"reference magnitude {refmag_label} [mag]")
    ax.set_ylabel("zero point, reference - ODI (1 s) [mag]")
    hist.set_xlabel("used stars [count]")
    return finish(fig, paths, ident, _title(name, "photometric zero point against magnitude", calibration),
                  {"points": int(zp.size), "used": int(used.sum())})


def zp_map(paths, ident: ExposureId, *, xi, eta, zp, used, zp_median: float, outlines: dict,
           ota: int | None = None, name: str = "photZP_map", calibration: str = "") -> PlotResult:
    """``photZP_map``: the zero point of each used calibration star at its place (median +- 0.2 mag).

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    xi, eta : numpy.ndarray
        Star positions, arcmin.
    zp : numpy.ndarray
        Zero point of each star, mag.
    used : numpy.ndarray
        Bool; only these stars are drawn.
    zp_median : float
        The exposure's zero point, mag (centre of the colour scale).
    outlines : dict
        OTA -> corners, arcmin.
    ota : int, optional
        Show only this OTA.
    name : str, optional
        Plot name on the title (``photZP_map_init`` for the first calibration of ``-autophotflat``).
    calibration : str, optional
        Which calibration this is, a title line of its own ("" for the final one).

    Returns
    -------
    PlotResult
        ``counts["points"]``: stars drawn.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    focal_axes(ax, outlines, ota=ota)
    sel = np.flatnonzero(np.asarray(used, bool))
    n = coloured_points(fig, ax, xi, eta, zp, sel[subsample(sel.size)], cmap="RdBu_r",
                        norm=Normalize(zp_median - MAP_HALF_RANGE, zp_median + MAP_HALF_RANGE),
                        label="zero point [mag]", empty="no calibration stars", s=14, edgecolors="0.3",
                        linewidths=0.3)
    scope = "focal plane" if ota is None else f"OTA {ota:02d}"
    return finish(fig, paths, ident, _title(name, f"zero point of the calibration stars, {scope}", calibration),
                  {"points": n})


def photflat_map(paths, ident: ExposureId, *, xi: dict, eta: dict, pf: dict, stars: int, outlines: dict
                 ) -> PlotResult:
    """``autophotflat``: the photometric flat over the focal plane, as the magnitude offset ``2.5 log10(pf)``.

    Where it is positive the pixels gave more ADU per unit flux than the mean (the stars' zero points were
    larger); dividing by the flat makes the catalogue magnitudes fainter by that much.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    xi, eta : dict
        OTA -> corners of the blocks the flat is sampled on, shape ``(n + 1, m + 1)``, arcmin.
    pf : dict
        OTA -> the flat on those blocks, shape ``(n, m)``, dimensionless.
    stars : int
        Stars the flat was built from (0: it could not be built and is 1 everywhere).
    outlines : dict
        OTA -> corners, arcmin.

    Returns
    -------
    PlotResult
        ``counts["otas"]`` and ``counts["blocks"]``: OTAs and blocks drawn.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    focal_axes(ax, outlines)
    offsets = {ota: 2.5 * np.log10(np.asarray(v, float)) for ota, v in pf.items()}
    if offsets:
        half = max(FLAT_MIN_HALF_RANGE, max(float(np.nanmax(np.abs(v), initial=0.0)) for v in offsets.values()))
        norm = Normalize(-half, half)
        for ota, offset in offsets.items():  # below the outlines (zorder 0)
            mesh = ax.pcolormesh(xi[ota], eta[ota], offset, cmap="RdBu_r", norm=norm, shading="flat", zorder=-1)
        colorbar(fig, mesh, ax, r"$2.5\,\log_{10}(pf)$, zero-point offset [mag]")
    else:
        no_data(ax, "no photometric flat")
    built = f"from {stars} stars" if stars else "not built (no zero point): 1 everywhere"
    return finish(fig, paths, ident, f"autophotflat: photometric flat {built}",
                  {"otas": len(offsets), "blocks": int(sum(v.size for v in offsets.values()))})
