"""What every QA plot shares: the exposure's identity in the title, figures without pyplot, atomic saving.

Figures are built with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``): no pyplot global state,
so tasks running side by side in one worker process never draw into each other's figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path

__all__ = ["ExposureId", "PlotResult", "new_figure", "finish", "no_data", "subsample", "DPI", "MAX_POINTS"]

#: Resolution of the raster formats, dots per inch (a 7 x 6 inch figure is 560 x 480 px).
DPI = 80

#: Most points (or arrows, whiskers) one panel draws; more are thinned by a fixed-seed random choice.
MAX_POINTS = 6000


@dataclass(frozen=True)
class ExposureId:
    """The identity of an exposure that every plot title carries.

    Attributes
    ----------
    obsid : str
        Exposure name (``o20131005T014745.0``).
    object : str
        ``OBJECT`` keyword.
    filter : str
        ``FILTER`` keyword.
    exptime : float
        ``EXPTIME``, seconds.
    """

    obsid: str
    object: str
    filter: str
    exptime: float

    @property
    def line(self) -> str:
        """``OBSID ... | OBJECT ... | FILTER ... | EXPTIME ... s``: the title's identity line."""
        return (f"OBSID {self.obsid} | OBJECT {self.object} | FILTER {self.filter} | "
                f"EXPTIME {self.exptime:g} s")


@dataclass
class PlotResult:
    """What a plot function drew, so that callers and tests can check it.

    Attributes
    ----------
    paths : list of str
        The files written (one per format).
    title : str
        The figure title.
    counts : dict
        Number of drawn items by kind, e.g. ``{"points": 127}`` (stars plotted, arrows, whiskers...).
    """

    paths: list
    title: str
    counts: dict = field(default_factory=dict)


def new_figure(size: tuple[float, float] = (7.0, 6.0)) -> Figure:
    """A figure attached to an Agg canvas (no pyplot), ``size`` in inches."""
    fig = Figure(figsize=size, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def finish(fig: Figure, paths, ident: ExposureId, what: str, counts: dict) -> PlotResult:
    """Title ``fig`` with ``what`` and the exposure identity, save it to every path atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The drawn figure.
    paths : sequence of path-like
        Output files; the format follows each suffix (``.png``, ``.pdf``, ``.svg``...).
    ident : ExposureId
        Goes on the title's second line.
    what : str
        The plot's own title line.
    counts : dict
        Passed through to the result.

    Returns
    -------
    PlotResult
    """
    title = f"{what}\n{ident.line}"
    fig.suptitle(title, fontsize=9)
    written = []
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=os.fspath(path).rsplit(".", 1)[-1])
        written.append(os.fspath(path))
    return PlotResult(written, title, counts)


def no_data(ax, message: str = "no data") -> None:
    """Write ``message`` in the middle of an empty panel."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")


def subsample(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` items (all of them, in order, if ``n <= limit``; fixed seed)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, limit, replace=False))
