"""Memory-mapped pixels: drop their pages from the process once they are read.

A page of a memory-mapped file that a process has read stays mapped into it, and counts in its resident and
proportional set size (RSS, PSS), until the map is closed. A task that reads many memory-mapped products one after
the other (the final MEF reads every OTA of an exposure) would hold all of them at once. :func:`release_pages`
unmaps the pages of a read-only map (``fits.open(..., mode="denywrite")``): they stay in the kernel's page cache,
and reading the array again maps them back, so the pixels never change.
"""

from __future__ import annotations

import mmap

import numpy as np

__all__ = ["release_pages"]


def _mapped_buffer(array) -> mmap.mmap | None:
    """The ``mmap`` an array's memory belongs to (following ``.base``), or None."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


def release_pages(array: np.ndarray) -> bool:
    """Unmap the pages of the read-only memory map ``array`` lives in from this process.

    Parameters
    ----------
    array : numpy.ndarray
        Any array, of any shape; only one backed by a read-only map (``mmap.ACCESS_READ``, astropy's
        ``mode="denywrite"``) is concerned. A copy-on-write map (astropy's default ``readonly``) is left alone:
        dropping its pages would drop the changes made to them in memory.

    Returns
    -------
    bool
        Whether pages were released (the whole map, every array on it).
    """
    buffer = _mapped_buffer(array)
    if buffer is None or buffer.closed:
        return False
    with memoryview(buffer) as view:
        if not view.readonly:
            return False
    buffer.madvise(mmap.MADV_DONTNEED)
    return True
