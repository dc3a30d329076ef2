"""One run at a time per night's work folder: an ``fcntl`` lock on ``<work>/<night>/.podiflow.lock``.

Two runs on one night with local schedulers would otherwise build and prune the same intermediates (one
deletes a detrended calibration frame the other is reading). The second run waits for the first, after one
line saying which run holds the night. The lock goes with the process (the kernel releases it whatever ends
the run), so a killed run never leaves the night locked; the file itself stays and only names the holder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from pathlib import Path

__all__ = ["night_lock", "LOCK_NAME"]

#: Name of the lock file in a night's work folder.
LOCK_NAME = ".podiflow.lock"


def _holder(fd: int) -> str:
    """What the lock file says about the run holding it."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 512).decode(errors="replace").strip() or "another run"


@contextlib.contextmanager
def night_lock(folder: str | os.PathLike, *, what: str, program: str = "podiflow"):
    """Hold the lock of a night's work folder for the ``with`` block, waiting for another run to finish.

    Parameters
    ----------
    folder : path-like
        The night's work folder (created if needed).
    what : str
        This run, as the waiting one is told (``podiflow reduce 20131004``).
    program : str
        Name at the start of the waiting line.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{program}: {folder}: a run is in progress ({_holder(fd)}); waiting for it to finish",
                  file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{what}, pid {os.getpid()}, since {time.strftime('%H:%M:%S')}\n".encode())
        yield
    finally:
        os.close(fd)
