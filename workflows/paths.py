"""Where things live on disk (ARCHITECTURE section 3), and the cached night index.

```
<raw>/<night>/<obsid>/<obsid>.<OTA>.fits[.fz]
<work>/<night>/<obsid>/<stage>/<obsid>.<OTA>.<stage>.<id>.fits     per-OTA checkpoints
<work>/<night>/<obsid>/<stage>/<obsid>.<stage>.<id>.fits           per-exposure checkpoints
<work>/<night>/cals/...                                            masters
<work>/<night>/night-index.json                                    the cached night index
<out>/<night>/<obsid>/<obsid>.fits                                 final MEF
```
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path

from podisteps.rawio import OBSID_PATTERN
from podisteps.nightindex import NightIndex, load_night_index, night_signature, observing_night

from .settings import podiflow

__all__ = [
    "night_of",
    "raw_root",
    "work_root",
    "out_root",
    "mastercals_root",
    "exposure_dir",
    "checkpoint_path",
    "night_index",
]

_OBSID_RE = re.compile(rf"^{OBSID_PATTERN}$")


def night_of(obsid: str) -> str:
    """Return the observing night ``YYYYMMDD`` of an exposure from its name (UT start in the name)."""
    m = _OBSID_RE.match(obsid)
    if not m:
        raise ValueError(f"{obsid!r} is not an exposure name like o20130101T123456.0")
    start = datetime.strptime(obsid[1:16], "%Y%m%dT%H%M%S")
    return observing_night(start, utc_offset_hours=podiflow().utc_offset_hours)


def raw_root() -> Path:
    """``[podiflow] raw_dir`` as an absolute path."""
    return Path(podiflow().raw_dir).expanduser().resolve()


def work_root() -> Path:
    """``[podiflow] work_dir`` as an absolute path."""
    return Path(podiflow().work_dir).expanduser().resolve()


def out_root() -> Path:
    """``[podiflow] out_dir`` as an absolute path."""
    return Path(podiflow().out_dir).expanduser().resolve()


def mastercals_root() -> Path:
    """``[podiflow] mastercals_dir`` as an absolute path."""
    return Path(podiflow().mastercals_dir).expanduser().resolve()


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


def night_index(night: str) -> NightIndex:
    """The night index of ``night`` (memoised per process while the folder is unchanged)."""
    night_dir = raw_root() / night
    cache = work_root() / night / "night-index.json"
    return _cached_index(str(night_dir), str(cache), repr(night_signature(night_dir)))
