"""Atomic file writing: a temporary name in the same folder that keeps the suffix, then ``os.replace``.

A reader never sees a half-written product, a failed write leaves no final file, and two writers of
the same product never interleave (the last complete one wins).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = ["temporary_sibling", "atomic_path", "write_fits_atomic", "write_text_atomic", "remove_stale_temporaries"]

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
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path to write; on success move it onto ``path``, on error remove it.

    The parent folder is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        _fsync(tmp)  # the data is on disk before the name points at it (a crash never leaves a short file)
        os.replace(tmp, path)
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


def write_fits_atomic(hdulist, path: str | os.PathLike, *, output_verify: str = "exception") -> Path:
    """Write an ``astropy.io.fits.HDUList`` to ``path`` atomically.

    Parameters
    ----------
    hdulist : astropy.io.fits.HDUList
        What to write. ``CompImageHDU`` members are written Rice-compressed as usual.
    path : path-like
        Final file name; its suffix (``.fits`` or ``.fits.fz``) is kept on the temporary file.
    output_verify : str, optional
        Passed to ``HDUList.writeto``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    with atomic_path(path) as tmp:
        hdulist.writeto(tmp, output_verify=output_verify)
    return Path(path)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
