"""Assembly of cells into the OTA frame (docs/instrument.md, 'Cell placement in the OTA frame').

Each cell's data section is copied as-is (no flips, no rotation) into its block of the float32 OTA frame;
everything else is NaN (SCI) and flagged in MASK.
"""

from __future__ import annotations

import numpy as np

from ..instrument import CELL_IDS, CellGeometry
from ..maskbits import MASK_BITS

__all__ = ["assemble_ota"]

def assemble_ota(
    cells: dict,
    geometry: CellGeometry,
    *,
    used: dict | None = None,
    trimcell: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the data sections of the cells into the OTA frame.

    Parameters
    ----------
    cells : dict
        ``(cx, cy)`` -> raw cell array (at least ``data_ny x data_nx``), any numeric dtype.
    geometry : podisteps.instrument.CellGeometry
        Geometry of these cells.
    used : dict, optional
        ``(cx, cy)`` -> bool; cells mapped to False are left undefined and flagged BADCELL.
        Default: every cell present in ``cells`` is used.
    trimcell : int, optional
        Pixels cut off every edge of the data section and target region (``-trimcell``).

    Returns
    -------
    sci : numpy.ndarray
        float32, shape ``(ota_size, ota_size)``; NaN where there is no valid data.
    mask : numpy.ndarray
        uint16, same shape; ``GAP`` outside the cells, ``BADCELL`` in unused cells.
    """
    n = geometry.ota_size
    sci = np.full((n, n), np.nan, dtype=np.float32)
    mask = np.full((n, n), MASK_BITS["GAP"], dtype=np.uint16)
    src_rows, src_cols = geometry.data_section(trimcell=trimcell)
    for cx, cy in CELL_IDS:
        rows, cols = geometry.target_region(cx, cy, trimcell=trimcell)
        data = cells.get((cx, cy))
        if data is None or (used is not None and not used.get((cx, cy), False)):
            mask[rows, cols] = MASK_BITS["BADCELL"]
            continue
        sci[rows, cols] = data[src_rows, src_cols]
        mask[rows, cols] = 0
    return sci, mask

