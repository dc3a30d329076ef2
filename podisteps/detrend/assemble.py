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
    sci = np.empty((n, n), dtype=np.float32)  # every pixel is written once below: no fill of the whole frame
    # Zeros from the kernel: the pages of the mostly-zero MASK that are only read later (the mask bits of the
    # cells in use) are never allocated, and none is written twice (about 10 ms per full-size OTA).
    mask = np.zeros((n, n), dtype=np.uint16)
    src_rows, src_cols = geometry.data_section(trimcell=trimcell)
    regions = {cid: geometry.target_region(*cid, trimcell=trimcell) for cid in CELL_IDS}
    for cid, (rows, cols) in regions.items():
        data = cells.get(cid)
        if data is None or (used is not None and not used.get(cid, False)):
            sci[rows, cols] = np.nan
            mask[rows, cols] = MASK_BITS["BADCELL"]
            continue
        sci[rows, cols] = data[src_rows, src_cols]
    # The cells lie on a grid (a cell's rows depend on its row only, its columns on its column), so what no
    # cell covers is whole rows and whole columns of the frame.
    for rows in _uncovered([r for r, _ in regions.values()], n):
        sci[rows] = np.nan
        mask[rows] = MASK_BITS["GAP"]
    for cols in _uncovered([c for _, c in regions.values()], n):
        sci[:, cols] = np.nan
        mask[:, cols] = MASK_BITS["GAP"]
    return sci, mask


def _uncovered(spans: list, n: int) -> list:
    """The slices of ``range(n)`` outside every slice of ``spans`` (slices with ``start <= stop``)."""
    out, pos = [], 0
    for start, stop in sorted({(s.start, s.stop) for s in spans}):
        if start > pos:
            out.append(slice(pos, start))
        pos = max(pos, stop)
    if pos < n:
        out.append(slice(pos, n))
    return out
