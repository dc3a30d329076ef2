"""``build``: every podiflow command's ``luigi.build``, with the scheduling process prepared for its forks.

``podiflow reduce``, ``podiflow watch``, ``podi_collectcells`` and ``make bench`` start their builds here, so that
what the benchmark measures is what the commands do. With ``--workers`` above 1 Luigi forks one process per task
from the scheduling process: whatever that process has read before the build, every task inherits for free.
"""

from __future__ import annotations

import luigi

from podisteps.instrument import almanac

__all__ = ["build"]


def build(tasks: list, *, workers: int, **options):
    """``luigi.build(tasks, workers=workers, **options)`` after reading what every fork would read again.

    That is astropy's bundled IERS table (about 0.5 CPU-s to parse; each exposure's final MEF needs it for the
    almanac cards, :func:`podisteps.instrument.almanac.load_earth_rotation`): once here instead of once per
    exposure.

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
    almanac.load_earth_rotation()
    return luigi.build(tasks, workers=workers, **options)
