"""``build``: every podiflow command's ``luigi.build``, with the scheduling process prepared for its forks.

``podiflow reduce``, ``podiflow watch``, ``podi_collectcells`` and ``make bench`` start their builds here, so that
what the benchmark measures is what the commands do. With ``--workers`` above 1 Luigi forks one process per task
from the scheduling process: whatever that process has read before the build, every task inherits for free.

That is astropy's IERS (Earth rotation) table, which each exposure's almanac cards need. Parsing the bundled
text file costs about 0.4 CPU-s; the parsed table is kept as a pickle named by a hash of the astropy, numpy
and Python versions and the bundled files' sizes and times, and read from there (about 0.01 s) by later runs.
Other versions or other bundled files give another name, so a cached table is only ever the one this
installation would parse; an unreadable cache file is parsed again and replaced. The table belongs to the
installation, not to a night, so it is kept in the installation-wide cache folder
(:func:`workflows.paths.cache_root`, ``~/.cache/podiflow/`` by default): a run in a fresh work folder reads it
too. A cache folder that cannot be written costs the parse, never the run.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path

import luigi

from podisteps.errors import logger
from podisteps.instrument import almanac
from podisteps.io.atomic import atomic_path

from .paths import cache_root

__all__ = ["build", "load_earth_rotation"]


def _cache_name() -> str:
    """The cache file's name for this astropy and its bundled IERS files."""
    import astropy
    import astropy_iers_data
    import numpy

    parts = [astropy.__version__, astropy_iers_data.__version__, numpy.__version__, sys.version]
    for path in almanac.earth_rotation_files():
        st = os.stat(path)
        parts += [os.path.basename(path), str(st.st_size), str(st.st_mtime_ns)]
    return f"iers-{hashlib.sha1(' '.join(parts).encode()).hexdigest()[:12]}.pickle"


def load_earth_rotation(cache_dir: Path) -> None:
    """Give this process astropy's parsed IERS table: from ``cache_dir`` if it holds it, else parsed and kept there.

    Parameters
    ----------
    cache_dir : pathlib.Path
        Folder of the cached table (created if needed).
    """
    if almanac.earth_rotation_loaded():
        return
    path = cache_dir / _cache_name()
    try:
        table = pickle.loads(path.read_bytes())
    except FileNotFoundError:
        table = None
    except Exception as exc:  # a damaged cache costs one parse, never a run
        logger.info("%s: unreadable cached IERS table (%s): parsed again", path, exc)
        table = None
    if table is not None:
        almanac.use_earth_rotation(table)
        return
    table = almanac.load_earth_rotation()
    if table.meta.get("data_path") != almanac.earth_rotation_files()[0]:  # keep the bundled file's, nothing else
        return
    try:
        with atomic_path(path, durable=False) as tmp:
            tmp.write_bytes(pickle.dumps(table, protocol=pickle.HIGHEST_PROTOCOL))
    except OSError as exc:
        logger.info("%s: cannot keep the parsed IERS table (%s): parsed again by the next run", path, exc)


def build(tasks: list, *, workers: int, **options):
    """``luigi.build(tasks, workers=workers, **options)`` after reading what every fork would read again.

    That is the IERS table (:func:`load_earth_rotation`, cached in :func:`workflows.paths.cache_root`): once
    here instead of once per exposure.

    Parameters
    ----------
    tasks : list of luigi.Task
    workers : int
        Luigi worker processes.
    **options
        Passed on to :func:`luigi.build` (``local_scheduler``, ``scheduler_host``, ``detailed_summary``, ...).

    Returns
    -------
    luigi.execution_summary.LuigiRunResult or bool
        What :func:`luigi.build` returns.
    """
    load_earth_rotation(cache_root())
    return luigi.build(tasks, workers=workers, **options)
