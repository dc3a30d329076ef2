"""Windowed centroids (SExtractor's ``XWIN_IMAGE``/``YWIN_IMAGE``) of the sources of one OTA, with masked
pixels and neighbours' light mirror-filled (docs/catalogue.md, 'Centroids and deblending'); used by
:func:`podisteps.catalog.detect.source_catalog`.
"""

from __future__ import annotations

import math

import numpy as np
import sep

__all__ = ["windowed_centroids"]


def _mirror_filled(sub: np.ndarray, bad: np.ndarray, segmap: np.ndarray, seg_id: int, x: float, y: float,
                   half: int):
    """A ``(2 half + 1)``-px square stamp of ``sub`` around the nearest pixel to ``(x, y)`` in which each
    masked pixel, and each pixel of another source's segment, takes the value of its mirror image through
    that pixel where the mirror is usable (SExtractor's ``MASK_TYPE CORRECT``); off-image pixels count as
    masked. Returns the stamp and the 0-based image position of its pixel ``(0, 0)``."""
    ny, nx = sub.shape
    ix, iy = int(round(x)), int(round(y))
    x0, y0 = ix - half, iy - half
    stamp = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    masked = np.ones(stamp.shape, bool)
    r0, r1, c0, c1 = max(y0, 0), min(y0 + 2 * half + 1, ny), max(x0, 0), min(x0 + 2 * half + 1, nx)
    block, inner = np.s_[r0:r1, c0:c1], np.s_[r0 - y0:r1 - y0, c0 - x0:c1 - x0]
    seg = segmap[block]
    stamp[inner] = sub[block]
    masked[inner] = bad[block] | ((seg != 0) & (seg != seg_id))
    mirror, mirror_masked = stamp[::-1, ::-1], masked[::-1, ::-1]
    fill = masked & ~mirror_masked
    stamp[fill] = mirror[fill]
    return stamp, (x0, y0)


def windowed_centroids(sub: np.ndarray, bad: np.ndarray, segmap: np.ndarray, seg_id, x, y,
                       sig) -> tuple[np.ndarray, np.ndarray]:
    """Windowed centroids (``sep.winpos``), with masked and neighbours' pixels in a window mirror-filled.

    A masked pixel or a neighbour's light inside the window pulls the centroid (by up to 5 px beside a
    cell gap or on a bright star's wing at full size); those sources are centred again, from ``(x, y)``,
    on stamps whose masked and neighbour pixels take their mirror images' values through the current
    centroid (:func:`_mirror_filled`, three iterations). A centroid that fails or moves more than ``2 sig + 1`` px from ``(x, y)``
    stays at ``(x, y)``.

    Parameters
    ----------
    sub, bad : numpy.ndarray
        Background-subtracted image (zero at masked pixels), ADU, and its mask, shape ``(ny, nx)``.
    segmap : numpy.ndarray
        sep's segmentation map (int32, 0 = sky), shape ``(ny, nx)``.
    seg_id : numpy.ndarray
        Each source's segment number in ``segmap``, shape ``(n,)``.
    x, y, sig : numpy.ndarray
        0-based starting positions and Gaussian window sigmas, px, shape ``(n,)``.

    Returns
    -------
    xw, yw : numpy.ndarray
        0-based centroids, px, shape ``(n,)``.
    """
    # only the flags are used, and they depend on the mask, segments and frame edge, not on the pixel values
    _, _, touched = sep.sum_circle(sub, x, y, 4.0 * sig, mask=bad, segmap=segmap,
                                   seg_id=np.asarray(seg_id, np.int32), subpix=0)
    touched = (touched & (sep.APER_HASMASKED | sep.APER_TRUNC)) != 0
    xw, yw, flag = np.array(x, float), np.array(y, float), np.zeros(x.size, np.int64)
    if not touched.all():  # sep centres each source on its own: the touched ones are centred below instead
        clear = ~touched
        xw[clear], yw[clear], flag[clear] = sep.winpos(sub, x[clear], y[clear], sig[clear], mask=bad)
    for i in np.flatnonzero(touched):
        cx, cy = x[i], y[i]
        for _ in range(3):
            stamp, (x0, y0) = _mirror_filled(sub, bad, segmap, seg_id[i], cx, cy, int(math.ceil(4.0 * sig[i])) + 2)
            sx, sy, sflag = sep.winpos(stamp, [cx - x0], [cy - y0], [sig[i]])
            if sflag[0] != 0 or not np.isfinite(sx[0] + sy[0]):
                break
            cx, cy = sx[0] + x0, sy[0] + y0
        xw[i], yw[i], flag[i] = cx, cy, 0
    moved = (flag != 0) | ~np.isfinite(xw) | ~np.isfinite(yw) | (np.hypot(xw - x, yw - y) > 2.0 * sig + 1.0)
    return np.where(moved, x, xw), np.where(moved, y, yw)
