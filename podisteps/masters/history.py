"""QuickReduce ``.history`` files: which calibration file applies at a given MJD.

Format (QuickReduce's, see docs/calibrations.md): whitespace-separated lines ``MJD filename [url]``. Lines
starting with ``#`` and lines with fewer than two tokens are skipped. Entries are walked in file order
and the last one with ``MJD_frame >= MJD_entry`` wins. File names are relative to the folder holding the
history file.

The options ``-wcs``, ``-crosstalk`` and ``-nonlinearity`` take a file (used as is) or a folder holding
that type's history file; :func:`resolve_calibration` implements both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "HistoryEntry",
    "parse_history",
    "read_history",
    "select_entry",
    "file_from_history",
    "resolve_calibration",
]

#: Option values that mean "use the default mastercals folder".
AUTO_VALUES = (None, "", "auto")


@dataclass(frozen=True)
class HistoryEntry:
    """One line of a history file.

    Attributes
    ----------
    mjd : float
        First MJD (exposure start) the file applies to.
    filename : str
        File name as written, relative to the history file's folder.
    url : str or None
        Optional download address (third token).
    line : int
        1-based line number in the history file.
    """

    mjd: float
    filename: str
    url: str | None
    line: int


def parse_history(text: str, *, source: str = "<history>") -> list[HistoryEntry]:
    """Parse the text of a history file.

    Parameters
    ----------
    text : str
        File content.
    source : str, optional
        Name used in error messages.

    Returns
    -------
    list of HistoryEntry
        In file order.

    Raises
    ------
    ValueError
        If the first token of a non-comment line with two or more tokens is not a number.
    """
    entries = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        tokens = line.split()
        if line.startswith("#") or len(tokens) < 2:
            continue
        try:
            mjd = float(tokens[0])
        except ValueError:
            raise ValueError(f"{source}, line {number}: {tokens[0]!r} is not an MJD") from None
        entries.append(HistoryEntry(mjd, tokens[1], tokens[2] if len(tokens) > 2 else None, number))
    return entries


def read_history(path: str | os.PathLike) -> list[HistoryEntry]:
    """Read and parse the history file ``path`` (see :func:`parse_history`)."""
    path = Path(path)
    return parse_history(path.read_text(), source=str(path))


def select_entry(entries: list[HistoryEntry], mjd: float, *, since: float | None = None) -> HistoryEntry | None:
    """Return the last entry, in file order, with ``mjd >= entry.mjd``; None if there is none.

    Parameters
    ----------
    entries : list of HistoryEntry
        In file order.
    mjd : float
        ``MJD-OBS`` of the frame.
    since : float, optional
        Only entries starting at or after this MJD count, and if none of them has started by ``mjd`` the
        first of them is used: the start of the frame's focal-plane layout for a history shared by both
        layouts (QuickReduce's ``nonlinearity.history`` gives 5x6 frames of MJD 57023-57174 the pODI
        April-2014 table, keyed by pODI positions: the wrong detectors).
    """
    if since is not None:
        entries = [e for e in entries if e.mjd >= since]
    chosen = None
    for entry in entries:
        if float(mjd) >= entry.mjd:
            chosen = entry
    return chosen if chosen is not None or since is None or not entries else entries[0]


def file_from_history(history_path: str | os.PathLike, mjd: float, *, since: float | None = None) -> Path | None:
    """Return the file a history file names for ``mjd``, resolved against the history file's folder.

    Parameters
    ----------
    history_path : path-like
        The ``.history`` file.
    mjd : float
        ``MJD-OBS`` of the frame.
    since : float, optional
        Start of the frame's layout (see :func:`select_entry`).

    Returns
    -------
    pathlib.Path or None
        The named file if an entry applies and that file exists; else None.
    """
    history_path = Path(history_path)
    entry = select_entry(read_history(history_path), mjd, since=since)
    if entry is None:
        return None
    candidate = history_path.parent / entry.filename
    return candidate if candidate.is_file() else None


def resolve_calibration(
    value: str | os.PathLike | None,
    *,
    history_name: str,
    mjd: float,
    default_dir: str | os.PathLike | None,
    since: float | None = None,
) -> Path | None:
    """Resolve a ``-wcs``/``-crosstalk``/``-nonlinearity`` value to one calibration file.

    Parameters
    ----------
    value : str, path-like or None
        None, ``""`` or ``"auto"``: use ``default_dir/history_name``. A folder: use its
        ``history_name``. A file whose name ends in ``.history``: use it as the history file. Any other
        file: that file, bypassing the history.
    history_name : str
        Name of the type's history file, e.g. ``"crosstalk.history"``.
    mjd : float
        ``MJD-OBS`` of the frame.
    default_dir : path-like or None
        The mastercals folder for this type and layout (e.g. ``<mastercals>/crosstalk/podi``).
    since : float, optional
        Start MJD of the frame's layout, for a history shared by both layouts (:func:`select_entry`).

    Returns
    -------
    pathlib.Path or None
        The calibration file; None when ``value`` is automatic and no file resolves (no default folder,
        no history file, no entry for ``mjd`` or the named file is missing). QuickReduce then logs the
        step as failed.

    Raises
    ------
    FileNotFoundError
        If an explicit ``value`` does not exist, or its history names no existing file for ``mjd``: an
        explicit request that cannot be honoured is an error, not a silent skip.
    """
    if value in AUTO_VALUES:
        if default_dir is None:
            return None
        history = Path(default_dir) / history_name
        return file_from_history(history, mjd, since=since) if history.is_file() else None
    path = Path(value)
    if path.is_dir():
        path = path / history_name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such calibration file")
    if path.name.endswith(".history"):
        found = file_from_history(path, mjd, since=since)
        if found is None:
            raise FileNotFoundError(f"{path}: names no existing file for MJD {float(mjd):.5f}")
        return found
    return path
