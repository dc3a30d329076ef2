"""Per-cell non-linearity ``d_lin = d + c2 d^2 + c3 d^3`` (docs/reduction-steps.md, 'Non-linearity';
docs/calibrations.md, 'Non-linearity tables').

The table is the first extension of the file (read by index; old files have no EXTNAME), a BinTable with
columns ``OTA`` (focal-plane position ``int(FPPOS[2:])``, not the detector serial), ``CELLX``, ``CELLY``,
``COEFF_X**2``, ``COEFF_X**3``, ``UNCERT_COEFF_X**2``, ``UNCERT_COEFF_X**3`` and, in most files,
``RELATIVE_GAIN`` and ``SATLEVEL``.

Fixed QuickReduce defect (docs/quickreduce.md, 'Cells missing from the non-linearity table'): a cell missing from the
table gets coefficients 0 (no correction) but relative gain **NaN**, not 0, and is flagged ``in_table=False``;
``-gain=relative`` then leaves that cell undefined instead of zeroing it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from astropy.io.fits.verify import VerifyWarning

__all__ = [
    "CellNonlinearity",
    "NonlinearityTable",
    "read_nonlinearity",
    "nonlinearity_hdulist",
    "apply_nonlinearity",
    "invert_nonlinearity",
]

REQUIRED_COLUMNS = ("OTA", "CELLX", "CELLY", "COEFF_X**2", "COEFF_X**3")
OPTIONAL_COLUMNS = ("UNCERT_COEFF_X**2", "UNCERT_COEFF_X**3", "RELATIVE_GAIN", "SATLEVEL")


@dataclass(frozen=True)
class CellNonlinearity:
    """Non-linearity data of one cell.

    Attributes
    ----------
    c2, c3 : float
        Coefficients of ``d^2`` (1/ADU) and ``d^3`` (1/ADU^2); 0 for a cell missing from the table.
    relative_gain : float
        ``RELATIVE_GAIN``; NaN when the cell or the column is missing.
    satlevel : float
        ``SATLEVEL`` in ADU; NaN when missing.
    in_table : bool
        False for a cell the table does not list.
    """

    c2: float
    c3: float
    relative_gain: float
    satlevel: float
    in_table: bool


MISSING_CELL = CellNonlinearity(0.0, 0.0, float("nan"), float("nan"), False)


@dataclass(frozen=True)
class NonlinearityTable:
    """A non-linearity table: ``(ota, cx, cy)`` -> :class:`CellNonlinearity`.

    Attributes
    ----------
    cells : dict
        The rows of the table.
    has_relative_gain : bool
        Whether the table has a ``RELATIVE_GAIN`` column (needed by ``-gain=relative``).
    source : str
        File name for messages.
    """

    cells: dict
    has_relative_gain: bool
    source: str

    @property
    def otas(self) -> tuple[int, ...]:
        """OTA positions listed in the table, ascending."""
        return tuple(sorted({ota for ota, _, _ in self.cells}))

    def cell(self, ota: int, cx: int, cy: int) -> CellNonlinearity:
        """Return the entry of one cell; :data:`MISSING_CELL` if the table does not list it."""
        return self.cells.get((int(ota), int(cx), int(cy)), MISSING_CELL)

    def for_ota(self, ota: int) -> dict:
        """Return ``(cx, cy)`` -> :class:`CellNonlinearity` for all 64 cells of ``ota``."""
        return {(cx, cy): self.cell(ota, cx, cy) for cx in range(8) for cy in range(8)}


def read_nonlinearity(hdul: fits.HDUList) -> NonlinearityTable:
    """Read a non-linearity table from an open file (first extension, by index).

    The non-standard ``TDISPn`` strings of some QuickReduce tables make astropy warn when the columns
    are parsed; that one warning is suppressed here.

    Raises
    ------
    ValueError
        If the file has no table extension or lacks a required column; the message names the file.
    """
    source = hdul.filename() or "<non-linearity HDUList>"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TDISPn.*", category=VerifyWarning)
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{source}: the first extension is not a non-linearity BinTable")
        data = hdul[1].data
        names = {n.upper() for n in data.columns.names}
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{source}: non-linearity table lacks column(s) {', '.join(missing)}")

    def column(name):
        return np.asarray(data[name], dtype=np.float64) if name in names else np.full(len(data), np.nan)

    ota, cx, cy = (np.asarray(data[c], dtype=int) for c in ("OTA", "CELLX", "CELLY"))
    c2, c3 = column("COEFF_X**2"), column("COEFF_X**3")
    relgain, satlevel = column("RELATIVE_GAIN"), column("SATLEVEL")
    cells = {
        (int(ota[i]), int(cx[i]), int(cy[i])): CellNonlinearity(
            float(c2[i]), float(c3[i]), float(relgain[i]), float(satlevel[i]), True
        )
        for i in range(len(data))
    }
    return NonlinearityTable(cells=cells, has_relative_gain="RELATIVE_GAIN" in names, source=source)


def nonlinearity_hdulist(rows: dict, *, satlevel: bool = True) -> fits.HDUList:
    """Build a non-linearity file in QuickReduce's layout (simulator, tests).

    Parameters
    ----------
    rows : dict
        ``(ota, cx, cy)`` -> :class:`CellNonlinearity` (``in_table`` is ignored).
    satlevel : bool, optional
        Write the ``SATLEVEL`` column (the 2015 files have it).

    Returns
    -------
    astropy.io.fits.HDUList
        Primary with ``POLYORDR = 3`` and a BinTable ``NONLINCORR``; uncertainties are written as 0.
    """
    keys = sorted(rows)
    entries = [rows[k] for k in keys]
    n = len(keys)
    columns = [
        fits.Column("OTA", "B", array=np.array([k[0] for k in keys], dtype=np.uint8)),
        fits.Column("CELLX", "B", array=np.array([k[1] for k in keys], dtype=np.uint8)),
        fits.Column("CELLY", "B", array=np.array([k[2] for k in keys], dtype=np.uint8)),
        fits.Column("COEFF_X**2", "D", array=[e.c2 for e in entries]),
        fits.Column("COEFF_X**3", "D", array=[e.c3 for e in entries]),
        fits.Column("UNCERT_COEFF_X**2", "D", array=np.zeros(n)),
        fits.Column("UNCERT_COEFF_X**3", "D", array=np.zeros(n)),
        fits.Column("RELATIVE_GAIN", "D", array=[e.relative_gain for e in entries]),
    ]
    if satlevel:
        columns.append(fits.Column("SATLEVEL", "E", array=[e.satlevel for e in entries]))
    primary = fits.PrimaryHDU()
    primary.header["POLYORDR"] = 3
    return fits.HDUList([primary, fits.BinTableHDU.from_columns(columns, name="NONLINCORR")])


def apply_nonlinearity(d: np.ndarray, c2: float, c3: float) -> np.ndarray:
    """Linearise overscan-subtracted counts: ``d + c2 d^2 + c3 d^3``.

    Parameters
    ----------
    d : numpy.ndarray
        Overscan-subtracted counts, ADU, any shape.
    c2, c3 : float
        Coefficients of the cell (1/ADU, 1/ADU^2).

    Returns
    -------
    numpy.ndarray
        Linearised counts, same shape, in the input's float dtype (float64 for integer input).
    """
    d = np.asarray(d)
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    return d + d * d * (c2 + c3 * d)


def invert_nonlinearity(
    d_lin: np.ndarray,
    c2: float,
    c3: float,
    *,
    tol: float = 1e-6,
    max_iter: int = 50,
) -> np.ndarray:
    """Solve ``d + c2 d^2 + c3 d^3 = d_lin`` for ``d`` (simulator: linear counts to raw counts).

    Vectorised Newton iterations starting from ``d = d_lin``.

    Parameters
    ----------
    d_lin : numpy.ndarray
        Linear counts, ADU, any shape.
    c2, c3 : float
        Coefficients of the cell.
    tol : float, optional
        Convergence limit on the Newton step, ADU.
    max_iter : int, optional
        Iteration limit.

    Returns
    -------
    numpy.ndarray
        float64, same shape: the non-linear (observed) counts.

    Raises
    ------
    ValueError
        If some finite value does not converge (no real root nearby, e.g. absurd coefficients).
    """
    target = np.asarray(d_lin, dtype=np.float64)
    d = target.copy()
    ignore = ~np.isfinite(target)
    for _ in range(max_iter):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            residual = d + d * d * (c2 + c3 * d) - target
            slope = 1.0 + d * (2.0 * c2 + 3.0 * c3 * d)
            step = residual / slope
        d -= step
        converged = (np.abs(step) <= tol) | ignore
        if converged.all():
            return d
    bad = int(np.count_nonzero(~converged))
    raise ValueError(f"non-linearity inverse (c2={c2:g}, c3={c3:g}) did not converge for {bad} value(s)")
