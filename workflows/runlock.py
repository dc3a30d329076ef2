"""Runs that share a work folder: one run at a time per night, and intermediates kept while any build runs.

- The night lock: an ``fcntl`` lock on ``<work>/<night>/.podiflow.lock``. Two runs on one night with local
  schedulers would otherwise build the same products twice. The second run waits for the first, after one
  line saying which run holds the night. The lock goes with the process (the kernel releases it whatever
  ends the run), so a killed run never leaves the night locked; the file itself stays and only names the
  holder.
- Build leases: every build started by a podiflow command (``reduce``, ``watch``, ``podi_collectcells``,
  with a local or a central scheduler) holds a locked file ``<work>/.builds/<host>-<pid>-<random>.lease``
  while it runs. Intermediates (the detrended calibration frames once their master is written) are listed
  in ``<work>/.builds/pending-*.txt`` and deleted when the last build on the work folder ends: a later task
  of the same build (the pupil-ghost and fringe templates read the detrended flat frames) or another build,
  on this night or on one that borrows its masters, may have scheduled a task that reads them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from podisteps.errors import logger
from podisteps.io.atomic import write_text_atomic

__all__ = ["night_lock", "build_lease", "other_builds", "discard_intermediates", "LOCK_NAME", "BUILDS_DIR",
           "LEASE_ENV"]

#: Name of the lock file in a night's work folder.
LOCK_NAME = ".podiflow.lock"

#: Folder of the work root holding the leases of running builds and the lists of intermediates they left.
BUILDS_DIR = ".builds"

#: Environment variable naming this build's own lease (Luigi's forked workers inherit it).
LEASE_ENV = "PODIFLOW_BUILD_LEASE"


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


def _held(path: Path) -> bool:
    """Whether a live process holds the lease file ``path`` (False for one left by a dead process)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def other_builds(work: str | os.PathLike) -> list[Path]:
    """The leases of the builds running on ``work`` other than this one (see the module docstring).

    Leases left by dead processes are removed on the way.
    """
    own = os.environ.get(LEASE_ENV)
    live = []
    for lease in sorted((Path(work) / BUILDS_DIR).glob("*.lease")):
        if str(lease) == own:
            continue
        if _held(lease):
            live.append(lease)
        else:
            lease.unlink(missing_ok=True)
    return live


def _discard_pending(folder: Path) -> None:
    """Delete every intermediate listed in ``folder``'s ``pending-*.txt``, and the lists."""
    for listing in sorted(folder.glob("pending-*.txt")):
        for line in listing.read_text().splitlines():
            if line:
                Path(line).unlink(missing_ok=True)
        listing.unlink(missing_ok=True)


@contextlib.contextmanager
def build_lease(work: str | os.PathLike):
    """Hold a lease on the work folder for the ``with`` block (one Luigi build); at its end, if no other
    build runs, delete the intermediates that builds left while others ran.

    Parameters
    ----------
    work : path-like
        The work root (``[podiflow] work_dir``).
    """
    folder = Path(work) / BUILDS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lease = folder / f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}.lease"
    fd = os.open(lease.with_suffix(".new"), os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.replace(lease.with_suffix(".new"), lease)  # a visible lease is always locked by its live holder
    saved = os.environ.get(LEASE_ENV)
    os.environ[LEASE_ENV] = str(lease)
    try:
        yield lease
    finally:
        lease.unlink(missing_ok=True)
        os.close(fd)
        if not other_builds(work):  # still excluding only this lease: an enclosing build counts
            _discard_pending(folder)
        if saved is None:
            os.environ.pop(LEASE_ENV, None)
        else:
            os.environ[LEASE_ENV] = saved


def discard_intermediates(paths, *, work: str | os.PathLike) -> bool:
    """Delete intermediates when no build can still need them.

    Inside a build that holds a lease (every podiflow command's), they are listed for the end of the build:
    another task of the same build may need them after this one (the pupil-ghost and fringe templates read
    the detrended flat frames a master flat is made of), and the last build to end on ``work`` deletes them.
    Outside a lease (the plain ``luigi`` command) they are deleted at once unless another build runs.

    Parameters
    ----------
    paths : iterable of path-like
        The files no product of this task needs any more.
    work : path-like
        The work root.

    Returns
    -------
    bool
        True if they were deleted now.
    """
    paths = [str(p) for p in paths]
    others = other_builds(work)
    if not others and not os.environ.get(LEASE_ENV):
        for path in paths:
            Path(path).unlink(missing_ok=True)
        return True
    listing = Path(work) / BUILDS_DIR / f"pending-{os.getpid()}-{secrets.token_hex(4)}.txt"
    write_text_atomic("".join(f"{p}\n" for p in paths), listing)
    logger.info("%d intermediates kept until the end of the build (%d other build(s) running); listed in %s",
                len(paths), len(others), listing)
    return False
