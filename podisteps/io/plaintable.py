"""Binary-table extensions of plain numeric columns read straight into numpy, without astropy's column objects.

Opening a table's ``data`` makes astropy build and verify one ``Column`` per ``TFORM`` card (about 5 ms for a
41-column ``CAT.ODI``, more than the rows take to read). A table whose columns are all scalar numbers without
scaling (``TFORM`` ``D``, ``E``, ``I``, ``J``, ``K``, no ``TSCALn``/``TZEROn``) is a plain big-endian structured
array in the file: :func:`read_table` reads it as one; any other table goes through ``hdu.data``. Either way the
values, column names and dtypes are the same.
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..errors import PodiflowError

__all__ = ["read_table"]

#: FITS TFORM letter of a plain scalar number -> numpy type as stored (big-endian).
_PLAIN_TYPES = {"D": ">f8", "E": ">f4", "I": ">i2", "J": ">i4", "K": ">i8"}
_PLAIN_TFORM_RE = re.compile(r"^1?([DEIJK])$")


def _plain_dtype(header: fits.Header) -> np.dtype | None:
    """The row dtype of a table of plain scalar numbers, None if any column is something else."""
    n = int(header["TFIELDS"])
    forms = [_PLAIN_TFORM_RE.match(str(header[f"TFORM{i}"]).strip()) for i in range(1, n + 1)]
    if not all(forms) or any(f"TSCAL{i}" in header or f"TZERO{i}" in header for i in range(1, n + 1)):
        return None
    dtype = np.dtype([(str(header[f"TTYPE{i}"]), _PLAIN_TYPES[m.group(1)]) for i, m in enumerate(forms, 1)])
    return dtype if dtype.itemsize == int(header["NAXIS1"]) else None


def read_table(hdu: fits.BinTableHDU, path: str) -> Table:
    """The rows of a binary-table extension as a Table (columns as stored, not copied again).

    Parameters
    ----------
    hdu : astropy.io.fits.BinTableHDU
        The extension, from ``path`` opened with ``fits.open`` (its data not read yet).
    path : str
        The file it is in.

    Returns
    -------
    astropy.table.Table
        ``NAXIS2`` rows, one column per ``TTYPEn``.

    Raises
    ------
    podisteps.errors.PodiflowError
        The file holds fewer rows than the header says.
    """
    dtype = _plain_dtype(hdu.header)
    if dtype is None:
        return Table(hdu.data)
    n_rows = int(hdu.header["NAXIS2"])
    rows = np.fromfile(path, dtype=dtype, count=n_rows, offset=hdu.fileinfo()["datLoc"])
    if len(rows) != n_rows:
        raise PodiflowError(f"{path}: {hdu.name} holds {len(rows)} of its {n_rows} rows (file cut short)")
    return Table(rows, copy=False)
