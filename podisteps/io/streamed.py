"""The streamed FITS writer: HDUs written atomically as they come, each image's pixels written straight from its array.

:func:`write_fits_streamed` writes the file ``astropy.io.fits.HDUList.writeto`` writes, byte for byte, without
ever holding the whole list: a generator may compute each HDU only when it is asked for (an assembled master, one
OTA frame at a time) and memory-mapped pixels are unmapped once written (the final MEF, one OTA at a time;
:func:`podisteps.io.mapped.release_pages`).

The layout of a FITS file is known before its pixels are written: each HDU is its header, a whole number of
2880-byte blocks, then its data padded with zero bytes to a whole number of blocks. So the writer puts each
header at its offset and hands the data section to a pool of threads, which write it with ``os.pwrite``
(converted to big-endian in slices of :data:`SLICE_BYTES` when the array is not already), while the next HDU
is prepared. Only plain image HDUs (float, 16-64 bit signed or 8-bit unsigned integers, unscaled) are written
this way; astropy serialises every other HDU (tables, compressed images, scaled images) itself into memory.
"""

from __future__ import annotations

import io
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.io import fits

from ..errors import PodiflowError
from .atomic import atomic_path
from .mapped import release_pages

__all__ = ["write_fits_streamed", "BLOCK_BYTES", "SLICE_BYTES"]

#: FITS block size: every header and every data section is a whole number of these.
BLOCK_BYTES = 2880
#: Bytes of an image written (and, if needed, byte-swapped) by one ``os.pwrite``.
SLICE_BYTES = 8 * 2**20
#: Dtypes (without byte order) whose arrays are written as they are: those astropy stores unscaled.
_PLAIN_DTYPES = frozenset({"f4", "f8", "i2", "i4", "i8", "u1"})


def write_fits_streamed(hdus: Iterable, path: str | os.PathLike, *, durable: bool = True,
                        output_verify: str = "exception", prepare: Callable | None = None,
                        threads: int = 2) -> Path:
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
    threads : int, optional
        Threads writing image data sections; 1 writes them in the calling thread. At most ``threads`` images
        are being written at once, each through slices of :data:`SLICE_BYTES`.

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
    with atomic_path(path, durable=durable) as tmp, _LayoutWriter(tmp, threads=threads) as writer:
        for index, hdu in enumerate(itertools.chain([primary], [first] if first is not None else [], hdus)):
            if index and not isinstance(hdu, fits.hdu.base.ExtensionHDU):
                raise PodiflowError(f"{path}: HDU {index} is not an extension ({type(hdu).__name__})")
            hdu.verify(option=output_verify)
            writer.append(hdu)
    return Path(path)


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


def _padded(nbytes: int) -> int:
    """``nbytes`` rounded up to whole FITS blocks."""
    return -(-nbytes // BLOCK_BYTES) * BLOCK_BYTES


class _LayoutWriter:
    """Write HDUs at their offsets of one new file: headers at once, image data through a thread pool.

    A context manager: on exit every data section has been written (or, after an error, every running write
    has finished and none is started), the first error is raised, and the file is closed.
    """

    def __init__(self, path: Path, *, threads: int):
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._offset = 0
        self._threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="fits-writer") if threads > 1 else None
        self._pending: deque[Future] = deque()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=exc_type is not None)
            if exc_type is None:
                while self._pending:
                    self._pending.popleft().result()
        finally:
            os.close(self._fd)
        return False

    def append(self, hdu) -> None:
        """Write ``hdu`` after the HDUs appended before it (its data possibly still being written on return)."""
        data = _plain_image_data(hdu)
        if data is None:
            self._offset += _pwrite_all(self._fd, _serialised(hdu), self._offset)
            return
        self._offset += _pwrite_all(self._fd, hdu.header.tostring().encode("ascii"), self._offset)
        if self._pool is None:
            _write_image(self._fd, data, self._offset)
        else:
            if len(self._pending) >= self._threads:  # at most `threads` images in flight
                self._pending.popleft().result()
            self._pending.append(self._pool.submit(_write_image, self._fd, data, self._offset))
        self._offset += _padded(data.nbytes)


def _write_image(fd: int, data: np.ndarray, offset: int) -> None:
    """Write ``data`` big-endian at ``offset`` of ``fd``, zero-padded to whole blocks, then release its pages.

    Parameters
    ----------
    fd : int
        A file opened for writing.
    data : numpy.ndarray
        N-D pixels (N >= 1) of a plain dtype, any byte order and strides; converted a slice of whole rows
        along the first axis at a time (about :data:`SLICE_BYTES`).
    offset : int
        Byte offset of the data section.
    """
    row_bytes = max(1, data.nbytes // max(1, data.shape[0]))
    step = max(1, SLICE_BYTES // row_bytes)
    big_endian = data.dtype.newbyteorder(">")
    for start in range(0, data.shape[0], step):
        part = np.ascontiguousarray(data[start:start + step], dtype=big_endian)
        offset += _pwrite_all(fd, part.reshape(-1).view(np.uint8), offset)
    padding = _padded(data.nbytes) - data.nbytes
    if padding:
        _pwrite_all(fd, bytes(padding), offset)
    release_pages(data)


def _pwrite_all(fd: int, buffer, offset: int) -> int:
    """``os.pwrite`` all of ``buffer`` (bytes or a 1-D uint8 array) at ``offset``; return its length."""
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
    return len(view)
