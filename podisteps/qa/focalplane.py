"""Focal-plane panels: standard coordinates around the pointing, OTA outlines, East to the left."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection

from .common import no_data

__all__ = ["focal_axes", "colorbar", "coloured_points"]

#: Margin around an OTA when a panel shows only that OTA, in units of its size.
OTA_MARGIN = 0.08


def focal_axes(ax, outlines: dict, *, ota: int | None = None) -> None:
    """Draw the OTA outlines and set up a focal-plane panel (or one OTA's part of it).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The panel.
    outlines : dict
        OTA number -> corners ``(4, 2)`` of its image in standard coordinates ``(xi, eta)``, arcmin.
    ota : int, optional
        Zoom onto this OTA (the per-OTA plots).
    """
    segments = [np.vstack([c, c[:1]]) for c in outlines.values()]
    ax.add_collection(LineCollection(segments, colors="0.55", linewidths=0.8, zorder=0))
    if ota is None:
        for number, corners in outlines.items():
            cx, cy = corners.mean(axis=0)
            ax.text(cx, cy, f"{number:02d}", ha="center", va="center", fontsize=7, color="0.6", zorder=0)
        corners = np.vstack(list(outlines.values())) if outlines else np.zeros((1, 2))
    else:
        corners = outlines[ota]
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    pad = OTA_MARGIN * max(float(np.max(hi - lo)), 1e-3)
    ax.set_xlim(hi[0] + pad, lo[0] - pad)  # East (increasing xi) to the left
    ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal")
    ax.set_xlabel(r"$\Delta\alpha\,\cos\delta$ [arcmin] (East left)")
    ax.set_ylabel(r"$\Delta\delta$ [arcmin]")


def colorbar(fig, mappable, ax, label: str) -> None:
    """A colour bar beside ``ax`` with ``label`` (quantity and unit)."""
    fig.colorbar(mappable, ax=ax, shrink=0.85).set_label(label)


def coloured_points(fig, ax, xi, eta, values, selected: np.ndarray, *, cmap: str, norm, label: str,
                    empty: str, **style) -> int:
    """Scatter the ``selected`` stars at their places, coloured by ``values``, with a colour bar.

    Parameters
    ----------
    fig, ax : matplotlib Figure and Axes
        The panel (set up by :func:`focal_axes`).
    xi, eta : numpy.ndarray
        Star positions, arcmin.
    values : numpy.ndarray
        The colour of each star (units in ``label``).
    selected : numpy.ndarray
        Indices of the stars to draw.
    cmap, norm, label : str, matplotlib.colors.Normalize, str
        Colour map, its range, and the colour bar's label with units.
    empty : str
        Note drawn when no star is selected.
    **style
        Passed to ``Axes.scatter`` (marker size, edges).

    Returns
    -------
    int
        Stars drawn.
    """
    if not len(selected):
        no_data(ax, empty)
        return 0
    points = ax.scatter(np.asarray(xi)[selected], np.asarray(eta)[selected], c=np.asarray(values)[selected],
                        cmap=cmap, norm=norm, **style)
    colorbar(fig, points, ax, label)
    return int(len(selected))
