"""Atomic file writing: a temporary name in the same folder that keeps the suffix, then ``os.replace``.

A reader never sees a half-written product, a failed write leaves no final file, and two writers of
the same product never interleave (the last complete one wins).

Products a user keeps are also made durable (``fsync`` of the file before the rename and of the folder
after it). Intermediate checkpoints skip that (``durable=False``): a crash of the machine before the
kernel wrote them back can leave one cut short, never wrong, and :func:`check_checkpoint` tells such a file
from a whole one by the HDU count written into its primary header (:data:`HDU_COUNT_CARD`) and the sizes its
headers describe (docs/integrity.md, 'Durability').
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from ..errors import PodiflowError
from .rawheaders import hdu_extent

__all__ = ["temporary_sibling", "atomic_path", "write_fits_atomic", "write_text_atomic",
           "start_writeback", "remove_stale_temporaries", "HDU_COUNT_CARD", "TornFileError", "check_checkpoint"]

#: Primary-header card of a non-durable checkpoint: the number of HDUs it was written with.
HDU_COUNT_CARD = "PFNHDU"


class TornFileError(PodiflowError, OSError):
    """A checkpoint shorter than its own headers say: cut short by a machine crash before it reached the disk."""


_SUFFIXES = (".fits.fz", ".fits.gz", ".fits", ".ecsv", ".json", ".html", ".png", ".pdf", ".txt")


def temporary_sibling(path: str | os.PathLike) -> Path:
    """Return a unique temporary name beside ``path`` that keeps its suffix.

    ``/a/b/o1.33.fits.fz`` -> ``/a/b/.o1.33.tmp-<hex>.fits.fz`` (hidden, same filesystem).
    """
    path = Path(path)
    name = path.name
    suffix = next((s for s in _SUFFIXES if name.endswith(s)), path.suffix)
    stem = name[: len(name) - len(suffix)] if suffix else name
    return path.with_name(f".{stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike, *, durable: bool = True):
    """Yield a temporary path to write; on success move it onto ``path``, on error remove it.

    The parent folder is created if needed.

    Parameters
    ----------
    path : path-like
        The final name.
    durable : bool, optional
        fsync the file before the rename and the folder after it, so the product survives a machine crash
        whole. False for intermediate checkpoints (see the module docstring): a process that dies still never
        leaves a partial file, only a machine crash can, and then a short one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)  # the data is on disk before the name points at it (a crash never leaves a short file)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)  # and the rename itself survives a crash
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    """fsync a file or a folder (opened read-only: enough on POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: ``sync_file_range`` flag: start writing the dirty pages of the range, do not wait (linux/fs.h).
_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """libc's ``sync_file_range`` (Linux), or None where there is none."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "sync_file_range", None)
    if function is not None:
        function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return function


def start_writeback(fd: int, offset: int, nbytes: int) -> None:
    """Start writing bytes ``offset`` to ``offset + nbytes`` of an open file to disk, without waiting.

    A hint for a file that will be fsynced (a durable product written in parts): the disk writes one part
    while the next is being written, and the fsync before the rename has little left to wait for (the
    final MEF of a full-size exposure: 0.6 -> 0.01 s). It changes no byte and is not itself durable
    (metadata and the rest are still the fsync's). Nothing where libc has no ``sync_file_range``; a
    failure is ignored.

    Parameters
    ----------
    fd : int
        A file descriptor open for writing.
    offset, nbytes : int
        The range, in bytes.
    """
    function = _sync_file_range()
    if function is not None:
        function(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)


#: ``.<stem>.tmp-<pid>-<hex8><suffix>``: the temporary names of :func:`temporary_sibling`.
_TEMPORARY = re.compile(r"^\..+\.tmp-(?P<pid>\d+)-[0-9a-f]{8}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, *, min_age_s: float = 60.0) -> list:
    """Remove the temporary files that killed runs left under ``folder`` (recursively).

    A temporary file is stale when the process named in it is no longer running on this host and it was
    not modified for ``min_age_s`` seconds (a writer on another host sharing the folder keeps its file
    fresh while it writes).

    Parameters
    ----------
    folder : path-like
        Where to look (a missing folder holds nothing).
    min_age_s : float, optional
        Seconds since the last modification before a dead writer's file is removed.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    removed, now = [], time.time()
    for root, _, names in os.walk(folder):
        for name in names:
            m = _TEMPORARY.match(name)
            path = Path(root) / name
            try:
                stale = m is not None and not _alive(int(m["pid"])) and now - path.stat().st_mtime > min_age_s
                if stale:
                    path.unlink()
                    removed.append(path)
            except FileNotFoundError:  # another run removed or renamed it meanwhile
                continue
    return removed


def write_fits_atomic(hdulist, path: str | os.PathLike, *, output_verify: str = "exception",
                      durable: bool = True) -> Path:
    """Write an ``astropy.io.fits.HDUList`` to ``path`` atomically.

    Parameters
    ----------
    hdulist : astropy.io.fits.HDUList
        What to write. ``CompImageHDU`` members are written Rice-compressed as usual.
    path : path-like
        Final file name; its suffix (``.fits`` or ``.fits.fz``) is kept on the temporary file.
    output_verify : str, optional
        Passed to ``HDUList.writeto``.
    durable : bool, optional
        See :func:`atomic_path`. False also writes :data:`HDU_COUNT_CARD` into the primary header of
        ``hdulist`` (changed in place), which :func:`check_checkpoint` reads back.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    if not durable:
        hdulist[0].header[HDU_COUNT_CARD] = (len(hdulist), "HDUs written (a shorter file was cut short)")
    with atomic_path(path, durable=durable) as tmp:
        hdulist.writeto(tmp, output_verify=output_verify)
    return Path(path)


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`TornFileError` if a non-durable checkpoint is shorter than it was written.

    Reads only the headers (milliseconds): the file must hold the :data:`HDU_COUNT_CARD` HDUs its primary
    names, and as many bytes as their headers describe. A file without the card (written durably) passes.

    Parameters
    ----------
    path : path-like
        A FITS file written by :func:`write_fits_atomic`.

    Raises
    ------
    TornFileError
        Empty, cut inside a header, fewer HDUs than written, or shorter than its headers describe; the
        message names the file.
    """
    path = Path(path)
    size = path.stat().st_size
    try:
        primary, n_hdus, needed = hdu_extent(path)
    except PodiflowError as exc:
        raise TornFileError(f"{path}: checkpoint cut short ({str(exc).removeprefix(f'{path}: ')})") from None
    written = int(primary.get(HDU_COUNT_CARD, n_hdus))
    if n_hdus < written or needed > size:
        raise TornFileError(f"{path}: checkpoint cut short ({size} bytes, {n_hdus} of {written} HDUs, "
                            f"its headers need {needed} bytes)")


def write_text_atomic(text: str, path: str | os.PathLike, *, durable: bool = True) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``durable``: see :func:`atomic_path`) and return ``path``."""
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
