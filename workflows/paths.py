"""Where things live on disk (docs/architecture.md, 'Identity and on-disk layout'), and the cached night index.

```
<raw>/<night>/<obsid>/<obsid>.<OTA>.fits[.fz]
<work>/<night>/<obsid>/<stage>/<obsid>.<OTA>.<stage>.<id>.fits     per-OTA checkpoints
<work>/<night>/<obsid>/<stage>/<obsid>.<stage>.<id>.fits           per-exposure checkpoints
<work>/<night>/cals/...                                            masters
<work>/<night>/night-index.json                                    the cached night index
<work>/<night>/night-index.exposures.json                          its records per exposure, with their files
<cache>/iers-<hash>.pickle                                         the parsed IERS table (cache_root())
<out>/<night>/<obsid>/<obsid>.fits                                 final MEF
```
"""

from __future__ import annotations

import functools
import os
import re
import time
from datetime import datetime
from pathlib import Path

import luigi

from podisteps.errors import PodiflowError
from podisteps.io.atomic import remove_stale_temporaries
from podisteps.io.nightindex import NightIndex, load_night_index, night_signature, observing_night
from podisteps.io.rawio import OBSID_PATTERN

from .options import OptionError, ReductionOptions
from .settings import site

__all__ = [
    "night_of",
    "raw_root",
    "work_root",
    "out_root",
    "mastercals_root",
    "cache_root",
    "exposure_dir",
    "checkpoint_path",
    "night_index",
    "SetupError",
    "check_writable",
    "check_reduction_config",
    "preflight",
]

_OBSID_RE = re.compile(rf"^{OBSID_PATTERN}$")


def night_of(obsid: str) -> str:
    """Return the observing night ``YYYYMMDD`` of an exposure from its name (UT start in the name)."""
    return _night_of(obsid, site().utc_offset_hours)


@functools.lru_cache(maxsize=4096)
def _night_of(obsid: str, utc_offset_hours: float) -> str:
    m = _OBSID_RE.match(obsid)
    if not m:
        raise ValueError(f"{obsid!r} is not an exposure name like o20130101T123456.0")
    start = datetime.strptime(obsid[1:16], "%Y%m%dT%H%M%S")
    return observing_night(start, utc_offset_hours=utc_offset_hours)


@functools.lru_cache(maxsize=32)
def _absolute(path: str, cwd: str) -> Path:
    return (Path(cwd) / Path(path).expanduser()).resolve()


def raw_root() -> Path:
    """``[podiflow] raw_dir`` as an absolute path."""
    return _absolute(site().raw_dir, os.getcwd())


def work_root() -> Path:
    """``[podiflow] work_dir`` as an absolute path."""
    return _absolute(site().work_dir, os.getcwd())


def out_root() -> Path:
    """``[podiflow] out_dir`` as an absolute path."""
    return _absolute(site().out_dir, os.getcwd())


def mastercals_root() -> Path:
    """``[podiflow] mastercals_dir`` as an absolute path."""
    return _absolute(site().mastercals_dir, os.getcwd())


#: Environment variable naming the folder of caches that belong to the installation, not to a night.
CACHE_ENV = "PODIFLOW_CACHE_DIR"


def cache_root() -> Path:
    """The folder of installation-wide caches (the parsed IERS table: :mod:`workflows.launch`), shared by every
    work folder: ``$PODIFLOW_CACHE_DIR``, else ``$XDG_CACHE_HOME/podiflow``, else ``~/.cache/podiflow``."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser().resolve() / "podiflow"


def exposure_dir(obsid: str) -> Path:
    """The raw folder of exposure ``obsid``."""
    return raw_root() / night_of(obsid) / obsid


def checkpoint_path(obsid: str, stage: str, identity: str, *, ota: int | None = None,
                    suffix: str = ".fits") -> Path:
    """Path of a per-OTA (``ota`` given) or per-exposure checkpoint of ``stage``."""
    ota_part = f".{ota:02d}" if ota is not None else ""
    return work_root() / night_of(obsid) / obsid / stage / f"{obsid}{ota_part}.{stage}.{identity}{suffix}"


@functools.lru_cache(maxsize=64)
def _cached_index(night_dir: str, cache: str, signature: str) -> NightIndex:
    return load_night_index(night_dir, cache)


#: Seconds a night folder's signature is trusted before it is scanned again. Scheduling a night asks for its
#: index ~10^4 times; scanning the folder each time was the largest cost of a no-op rerun.
INDEX_RECHECK_S = 5.0
_signatures: dict = {}


def _signature(night_dir: Path) -> str:
    """:func:`night_signature` as text, rescanned when the night folder's own mtime changed (an exposure
    folder added or removed) or after :data:`INDEX_RECHECK_S` (a file rewritten inside one)."""
    now, folder_state = time.monotonic(), night_dir.stat().st_mtime_ns
    checked = _signatures.get(night_dir)
    if checked is None or checked[1] != folder_state or now - checked[0] > INDEX_RECHECK_S:
        checked = _signatures[night_dir] = (now, folder_state, repr(night_signature(night_dir)))
    return checked[2]


def night_index(night: str) -> NightIndex:
    """The night index of ``night`` (memoised per process while the folder is unchanged; the folder is
    rescanned at most every :data:`INDEX_RECHECK_S` seconds)."""
    night_dir = raw_root() / night
    cache = work_root() / night / "night-index.json"
    return _cached_index(str(night_dir), str(cache), _signature(night_dir))


class SetupError(PodiflowError, RuntimeError):
    """A problem found before any work starts (one line naming the setting or folder)."""


def check_writable(folder: Path, what: str) -> None:
    """Raise :class:`SetupError` unless ``folder`` is (or can be created as) a writable folder.

    Parameters
    ----------
    folder : pathlib.Path
        The folder.
    what : str
        How the message names it, e.g. ``"[podiflow] out_dir"``.
    """
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise SetupError(f"{what} = {folder}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SetupError(f"{what} = {folder}: {probe} is not writable")


def check_reduction_config() -> None:
    """Raise :class:`SetupError` for an unknown ``[reduction]`` key of luigi.cfg or a value it cannot parse."""
    cfg = luigi.configuration.get_config()
    items = dict(cfg.items("reduction", raw=True)) if cfg.has_section("reduction") else {}
    try:
        ReductionOptions.from_mapping(items)
    except OptionError as exc:
        raise SetupError(f"luigi.cfg [reduction]: {exc}") from None


def preflight(nights=(), *, folders=()) -> list:
    """Checks before a run starts: ``[reduction]`` keys and values, the work and output folders writable;
    then the temporary files killed runs left in the nights' work and output folders are removed.

    Parameters
    ----------
    nights : iterable of str
        Nights about to be reduced.
    folders : iterable of (pathlib.Path, str)
        Further folders that must be writable, with how to name them (e.g. OUTPUT's folder).

    Returns
    -------
    list of pathlib.Path
        The stale temporary files removed.

    Raises
    ------
    SetupError
        One line naming the setting or folder.
    """
    check_reduction_config()
    for folder, what in ((work_root(), "[podiflow] work_dir"), (out_root(), "[podiflow] out_dir"), *folders):
        check_writable(folder, what)
    return [p for n in nights for root in (work_root(), out_root()) for p in remove_stale_temporaries(root / n)]
