"""Serial-overscan subtraction per cell (docs/instrument.md, 'Raw cell layout'; docs/reduction-steps.md, 'Overscan').

QuickReduce subtracts one scalar per cell: the median of the whole overscan block. The optional row-wise
mode subtracts, per row, the median across the overscan columns, smoothed along the rows.

Every function works on a float copy (or, asked to, on a float32 cell in place); raw integer cells are never
modified (docs/quickreduce.md, 'Integer arithmetic').
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from ..instrument import CellGeometry
from ..stats import median

__all__ = ["overscan_block", "overscan_level", "overscan_row_levels", "subtract_overscan"]


def overscan_block(cell: np.ndarray, geometry: CellGeometry) -> np.ndarray:
    """Return the overscan block of a raw cell, clipped to the cell's actual shape.

    Parameters
    ----------
    cell : numpy.ndarray
        Raw cell, shape ``(ny, nx)`` including the overscan, any numeric dtype.
    geometry : podisteps.instrument.CellGeometry
        Geometry of the cell.

    Raises
    ------
    ValueError
        If the cell is too narrow to hold any overscan column.
    """
    rows, cols = geometry.overscan_section(cell.shape)
    block = cell[rows, cols]
    if block.size == 0:
        raise ValueError(
            f"raw cell of shape {cell.shape} has no overscan (expected columns {geometry.overscan_cols[0]}.."
            f"{geometry.overscan_cols[1] - 1})"
        )
    return block


def overscan_level(cell: np.ndarray, geometry: CellGeometry) -> float:
    """Return the scalar overscan level of a cell: the median of its whole overscan block, in ADU."""
    return float(median(overscan_block(cell, geometry)))


def overscan_row_levels(cell: np.ndarray, geometry: CellGeometry, *, window: int = 15) -> np.ndarray:
    """Return a smoothed overscan level per row of a cell.

    Parameters
    ----------
    cell : numpy.ndarray
        Raw cell, shape ``(ny, nx)``.
    geometry : podisteps.instrument.CellGeometry
        Geometry of the cell.
    window : int, optional
        Length in rows of the running median applied to the per-row medians (1 = no smoothing).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(ny,)``, ADU. Rows outside the overscan block's row range take the value of the
        nearest row inside it.
    """
    rows, _ = geometry.overscan_section(cell.shape)
    per_row = np.median(overscan_block(cell, geometry).astype(np.float64), axis=1)
    smooth = median_filter(per_row, size=max(1, int(window)), mode="nearest")
    index = np.clip(np.arange(cell.shape[0]) - rows.start, 0, smooth.size - 1)
    return smooth[index]


def subtract_overscan(
    cell: np.ndarray,
    geometry: CellGeometry,
    *,
    rowwise: bool = False,
    window: int = 15,
    inplace: bool = False,
) -> tuple[np.ndarray, float | np.ndarray]:
    """Subtract the overscan from a whole raw cell (data and overscan), in float.

    Parameters
    ----------
    cell : numpy.ndarray
        Raw cell, shape ``(ny, nx)``, any numeric dtype; not modified unless ``inplace``.
    geometry : podisteps.instrument.CellGeometry
        Geometry of the cell.
    rowwise : bool, optional
        Subtract :func:`overscan_row_levels` instead of the scalar :func:`overscan_level` (QuickReduce).
    window : int, optional
        Running-median length for ``rowwise``.
    inplace : bool, optional
        Subtract a scalar level in the cell itself when it is a writable float32 array (no new array). The
        level is then a float32 value (the median of float32 pixels) and the float32 difference is the
        float64 one rounded, as in a new array.

    Returns
    -------
    corrected : numpy.ndarray
        float32, shape ``(ny, nx)``, ADU (``cell`` itself when subtracted in place).
    level : float or numpy.ndarray
        The scalar level, or the per-row levels (shape ``(ny,)``), for the header and log.
    """
    if rowwise:
        level = overscan_row_levels(cell, geometry, window=window)
    else:
        level = overscan_level(cell, geometry)
        if inplace and cell.dtype == np.float32 and cell.flags.writeable:
            return np.subtract(cell, np.float32(level), out=cell), level
    # computed in float64 and rounded to float32 chunk by chunk (numpy's buffered casting): no float64 image
    corrected = np.subtract(cell, level[:, None] if rowwise else level, dtype=np.float64,
                            out=np.empty(cell.shape, np.float32), casting="same_kind")
    return corrected, level
