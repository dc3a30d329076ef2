"""Cosmic-ray removal, cell by cell, with L.A.Cosmic (docs/reduction-steps.md, 'Cosmic rays').

Uses ``astroscrappy.detect_cosmics`` (a maintained C implementation of van Dokkum 2001). Each cell's region
of the OTA frame is cleaned on its own, as QuickReduce does; undefined (NaN) pixels are excluded from the
detection and stay NaN. Unlike QuickReduce, the cosmic-ray mask is kept (MASK bit COSMIC).
"""

from __future__ import annotations

from dataclasses import dataclass

import astroscrappy
import numpy as np
from threadpoolctl import threadpool_limits

from ..instrument import CELL_IDS, CellGeometry

__all__ = ["CosmicParameters", "clean_cell", "remove_cosmics", "crj_header"]

#: Pixels of margin (edge values repeated) added around each cell before detection.
EDGE_MARGIN = 6


@dataclass(frozen=True)
class CosmicParameters:
    """L.A.Cosmic parameters (QuickReduce defaults).

    Attributes
    ----------
    niter : int
        Iterations (``-crj=N``).
    sigclip : float
        Laplacian-to-noise detection limit.
    sigfrac : float
        Fraction of ``sigclip`` for neighbouring pixels.
    objlim : float
        Minimum contrast between the Laplacian and the fine-structure image.
    satlevel : float or None
        Saturation level in ADU of the data; None = no saturation handling (QuickReduce's -1).
    cleantype : str
        How flagged pixels are replaced (astroscrappy ``cleantype``).
    threads : int
        OpenMP threads for astroscrappy (1: parallelism comes from OTAs reduced side by side).
    """

    niter: int = 4
    sigclip: float = 5.0
    sigfrac: float = 0.3
    objlim: float = 5.0
    satlevel: float | None = 55000.0
    cleantype: str = "meanmask"
    threads: int = 1


def clean_cell(
    data: np.ndarray,
    *,
    gain: float,
    readnoise: float,
    params: CosmicParameters = CosmicParameters(),
) -> tuple[np.ndarray, np.ndarray]:
    """Detect and replace cosmic rays in one cell.

    Parameters
    ----------
    data : numpy.ndarray
        Cell data including the sky, shape ``(ny, nx)``, in ADU of ``gain``; NaN = undefined.
    gain : float
        e-/ADU.
    readnoise : float
        Read noise, electrons.
    params : CosmicParameters, optional

    Returns
    -------
    cleaned : numpy.ndarray
        float32, same shape; NaN where the input was NaN.
    crmask : numpy.ndarray
        bool, same shape; True = cosmic-ray pixel.
    """
    bad = ~np.isfinite(data)
    if bad.all():
        return np.array(data, dtype=np.float32), np.zeros(data.shape, dtype=bool)
    filled = np.where(bad, np.nanmedian(data), data).astype(np.float32)
    # L.A.Cosmic cannot flag pixels within ~2 px of the array border. A margin that repeats the edge
    # pixels outward lets it flag cosmic rays there, while a star cut by the cell edge continues as a
    # plateau (a mirrored margin would turn it into a sharp, falsely flagged ridge).
    pad = min(EDGE_MARGIN, min(data.shape) - 1)
    core = (slice(pad, pad + data.shape[0]), slice(pad, pad + data.shape[1]))
    satlevel = np.inf if params.satlevel is None else params.satlevel * gain
    # astroscrappy's OpenMP threads only contend with the other OTA workers on cells this small.
    with threadpool_limits(limits=params.threads, user_api="openmp"):
        crmask, cleaned = astroscrappy.detect_cosmics(
            np.pad(filled, pad, mode="edge"), inmask=np.pad(bad, pad, mode="edge"), sigclip=params.sigclip,
            sigfrac=params.sigfrac, objlim=params.objlim, gain=gain, readnoise=readnoise, satlevel=satlevel,
            niter=params.niter, cleantype=params.cleantype,
        )
    cleaned = np.asarray(cleaned[core], dtype=np.float32)
    cleaned[bad] = np.nan
    return cleaned, np.asarray(crmask[core], dtype=bool) & ~bad


def remove_cosmics(
    sci: np.ndarray,
    geometry: CellGeometry,
    *,
    gain: float | dict,
    readnoise: float | dict,
    params: CosmicParameters = CosmicParameters(),
    trimcell: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Clean every cell of an OTA frame.

    Parameters
    ----------
    sci : numpy.ndarray
        float32 OTA frame, ``(ota_size, ota_size)``.
    geometry : podisteps.instrument.CellGeometry
        Cell placement.
    gain : float or dict
        e-/ADU: one value (QuickReduce uses GAINX) or ``(cx, cy)`` -> value.
    readnoise : float or dict
        Read noise in electrons: one value (RDNOISEE) or per cell.
    params : CosmicParameters, optional
    trimcell : int, optional
        ``-trimcell`` used at assembly.

    Returns
    -------
    cleaned : numpy.ndarray
        float32 copy of ``sci`` with cosmic rays replaced.
    crmask : numpy.ndarray
        bool, frame shape; True = cosmic-ray pixel (MASK bit COSMIC).
    """
    cleaned = np.array(sci, dtype=np.float32)
    crmask = np.zeros(sci.shape, dtype=bool)
    for cell in CELL_IDS:
        rows, cols = geometry.target_region(*cell, trimcell=trimcell)
        cell_gain = gain[cell] if isinstance(gain, dict) else gain
        cell_rn = readnoise[cell] if isinstance(readnoise, dict) else readnoise
        cleaned[rows, cols], crmask[rows, cols] = clean_cell(
            cleaned[rows, cols], gain=cell_gain, readnoise=cell_rn, params=params
        )
    return cleaned, crmask


def crj_header(params: CosmicParameters | None) -> dict:
    """Header cards ``CRJ_ITER, CRJ_SIGC, CRJ_SIGF, CRJ_OBJL, CRJ_SATU, CRJ_METH`` (always written).

    With ``params=None`` (cosmic-ray removal off) ``CRJ_ITER = 0``.
    """
    params = params or CosmicParameters(niter=0)
    return {
        "CRJ_ITER": params.niter,
        "CRJ_SIGC": params.sigclip,
        "CRJ_SIGF": params.sigfrac,
        "CRJ_OBJL": params.objlim,
        "CRJ_SATU": -1.0 if params.satlevel is None else params.satlevel,
        "CRJ_METH": "astroscrappy",
    }
