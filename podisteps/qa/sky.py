"""Sky QA: ``skylevel``, the sky boxes of every OTA and their medians."""

from __future__ import annotations

import numpy as np

from .common import ExposureId, PlotResult, finish, new_figure, no_data, subsample

__all__ = ["sky_levels"]

#: Horizontal spread of an OTA's sky boxes around its position on the x axis.
JITTER = 0.3


def sky_levels(paths, ident: ExposureId, *, ota: np.ndarray, intensity: np.ndarray, otas) -> PlotResult:
    """``skylevel``: every sky box per OTA (jittered strip) with the OTA's median and the exposure's median.

    Parameters
    ----------
    paths : sequence of path-like
        Files to write.
    ident : ExposureId
        For the title.
    ota : numpy.ndarray
        OTA of each sky box.
    intensity : numpy.ndarray
        Sky level of each box, ADU.
    otas : sequence of int
        OTAs of the exposure, in the order of the x axis.

    Returns
    -------
    PlotResult
        ``counts["boxes"]`` (sky boxes drawn) and ``counts["otas"]`` (OTAs with a median).
    """
    ota, intensity = np.asarray(ota, int), np.asarray(intensity, float)
    fig = new_figure((8.0, 4.5))
    ax = fig.add_subplot()
    keep = subsample(ota.size)
    position = {number: i for i, number in enumerate(otas)}
    x = np.array([position.get(o, -1) for o in ota[keep]], float)
    jitter = np.random.default_rng(1).uniform(-JITTER, JITTER, x.size)
    medians = {o: float(np.median(intensity[ota == o])) for o in otas if np.any(ota == o)}
    if medians:
        ax.scatter(x + jitter, intensity[keep], s=3, color="tab:blue", alpha=0.3, linewidths=0)
        ax.plot([position[o] for o in medians], list(medians.values()), "_", color="k", ms=18, mew=2,
                label="OTA median")
        overall = float(np.median(intensity))
        ax.axhline(overall, color="tab:orange", lw=1, label=f"exposure median {overall:.1f} ADU")
        lo, hi = np.percentile(intensity, [1, 99])
        pad = max(0.1 * (hi - lo), 1.0)
        ax.set_ylim(lo - pad, hi + pad)
        ax.legend(loc="upper right", fontsize=8)
    else:
        no_data(ax, "no sky boxes")
    ax.set_xticks(range(len(otas)), [f"{o:02d}" for o in otas], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, len(otas) - 0.3)
    ax.set_xlabel("OTA [xy position]")
    ax.set_ylabel("sky level per box [ADU]")
    fig.subplots_adjust(top=0.85, bottom=0.16)
    return finish(fig, paths, ident, "skylevel: sky boxes per OTA", {"boxes": int(keep.size), "otas": len(medians)})
