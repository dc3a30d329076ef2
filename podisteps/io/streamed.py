"""The streamed FITS writer: HDUs written atomically as they come, each image's pixels written straight from its array.

:func:`write_fits_streamed` writes the file ``astropy.io.fits.HDUList.writeto`` writes, byte for byte, without
ever holding the whole list: a generator may compute each HDU only when it is asked for (an assembled master, one
OTA frame at a time) and memory-mapped pixels are unmapped once written (the final MEF, one OTA at a time;
:func:`podisteps.io.mapped.release_pages`).

A FITS file is each HDU's header, a whole number of 2880-byte blocks, then its data padded with zero bytes to
a whole number of blocks. The writer writes the header astropy makes and then the pixels of a plain image HDU
(float, 16-64 bit signed or 8-bit unsigned integers, unscaled) itself, straight from the array (a memory map of
a big-endian checkpoint is not copied; other arrays are converted to big-endian in slices of
:data:`SLICE_BYTES`); astropy serialises every other HDU (tables, compressed images, scaled images) into
memory. A durable file's image sections are handed to the disk as soon as they are written
(:func:`podisteps.io.atomic.start_writeback`), so the fsync before the rename has little left to wait for.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import PodiflowError
from .atomic import atomic_path, start_writeback
from .mapped import release_pages

__all__ = ["write_fits_streamed", "BLOCK_BYTES", "SLICE_BYTES"]

#: FITS block size: every header and every data section is a whole number of these.
BLOCK_BYTES = 2880
#: Bytes of an image converted to big-endian (when it is not) and written at a time.
SLICE_BYTES = 8 * 2**20
#: Dtypes (without byte order) whose arrays are written as they are: those astropy stores unscaled.
_PLAIN_DTYPES = frozenset({"f4", "f8", "i2", "i4", "i8", "u1"})


def write_fits_streamed(hdus: Iterable, path: str | os.PathLike, *, durable: bool = True,
                        output_verify: str = "exception", prepare: Callable | None = None) -> Path:
    """Write HDUs (primary first) to ``path`` atomically, one after the other as they come.

    The bytes are those of ``fits.HDUList(list(hdus)).writeto(path)``: ``EXTEND`` set in the primary when an
    extension follows, each HDU verified, then written. After an image's pixels are written, the pages of a
    read-only memory map they live in are unmapped from this process (:func:`podisteps.io.mapped.release_pages`).

    Parameters
    ----------
    hdus : iterable of astropy.io.fits HDUs
        A ``PrimaryHDU``, then the extensions; a list, an ``HDUList`` or a generator (read one HDU ahead).
    path : path-like
        The final file name (:func:`podisteps.io.atomic.atomic_path`).
    durable : bool, optional
        fsync the file before the rename and the folder after it (False for checkpoints: no ``PFNHDU`` card is
        written, see :func:`podisteps.io.atomic.check_checkpoint`).
    output_verify : str, optional
        As for ``HDUList.writeto``, applied to each HDU.
    prepare : callable, optional
        ``prepare(primary_header)`` before anything is written (e.g. the provenance cards).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    PodiflowError
        The first HDU is not a ``PrimaryHDU`` or a later one is not an extension (the message names ``path``).
    astropy.io.fits.VerifyError
        An HDU fails verification. Whatever fails, no file is left at ``path`` nor beside it.
    """
    hdus = iter(hdus)
    primary, first = next(hdus, None), next(hdus, None)
    if not isinstance(primary, fits.PrimaryHDU):
        raise PodiflowError(f"{path}: the first HDU to write must be a PrimaryHDU, not {type(primary).__name__}")
    if prepare is not None:
        prepare(primary.header)
    fits.HDUList([primary] + ([first] if first is not None else [])).update_extend()
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb", buffering=0) as out:
        for index, hdu in enumerate(itertools.chain([primary], [first] if first is not None else [], hdus)):
            if index and not isinstance(hdu, fits.hdu.base.ExtensionHDU):
                raise PodiflowError(f"{path}: HDU {index} is not an extension ({type(hdu).__name__})")
            hdu.verify(option=output_verify)
            _write_hdu(out, hdu, writeback=durable)
    return Path(path)


def _write_hdu(out, hdu, *, writeback: bool) -> None:
    """Append ``hdu`` (verified) to the unbuffered binary file ``out``, then release the pages of its pixels.

    ``writeback``: see :func:`_write_image`.
    """
    data = _plain_image_data(hdu)
    if data is None:
        _write_all(out, _serialised(hdu))
        data = hdu.data if isinstance(hdu, fits.ImageHDU) else None  # e.g. the source of a compressed image
    else:
        _write_all(out, hdu.header.tostring().encode("ascii"))
        _write_image(out, data, writeback=writeback)
    if isinstance(data, np.ndarray):
        release_pages(data)


def _plain_image_data(hdu) -> np.ndarray | None:
    """The pixels of an image HDU that astropy writes unchanged but for byte order, or None for any other HDU."""
    if type(hdu) not in (fits.PrimaryHDU, fits.ImageHDU) or "BSCALE" in hdu.header or "BZERO" in hdu.header:
        return None
    data = hdu.data
    if not isinstance(data, np.ndarray) or data.ndim == 0 or data.dtype.str[1:] not in _PLAIN_DTYPES:
        return None
    hdu.update_header()  # what astropy does before it writes the header (BITPIX, NAXISn from the data)
    return data


def _serialised(hdu) -> bytes:
    """The bytes astropy writes for ``hdu`` (header, data, padding), already verified by the caller."""
    buffer = io.BytesIO()
    fits.HDUList([hdu]).writeto(buffer, output_verify="ignore")
    return buffer.getvalue()


def _write_image(out, data: np.ndarray, *, writeback: bool) -> None:
    """Append ``data`` big-endian to ``out``, zero-padded to whole blocks.

    Parameters
    ----------
    out : io.FileIO
        The file written, unbuffered, positioned at the data section.
    data : numpy.ndarray
        N-D pixels (N >= 1) of a plain dtype, any byte order and strides; converted (if it must be) a slice of
        whole rows along the first axis at a time (about :data:`SLICE_BYTES`).
    writeback : bool
        Start writing the section to disk once written (:func:`podisteps.io.atomic.start_writeback`).
    """
    start = out.tell()
    row_bytes = max(1, data.nbytes // max(1, data.shape[0]))
    step = max(1, SLICE_BYTES // row_bytes)
    big_endian = data.dtype.newbyteorder(">")
    for row in range(0, data.shape[0], step):
        _write_all(out, np.ascontiguousarray(data[row:row + step], dtype=big_endian).reshape(-1).view(np.uint8))
    padding = -data.nbytes % BLOCK_BYTES
    if padding:
        _write_all(out, bytes(padding))
    if writeback:
        start_writeback(out.fileno(), start, out.tell() - start)


def _write_all(out, buffer) -> None:
    """Write all of ``buffer`` (bytes or a 1-D uint8 array) to the unbuffered file ``out``."""
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        done += out.write(view[done:])
