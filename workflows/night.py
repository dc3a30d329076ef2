"""Wrappers: ``ReduceExposure(obsid)`` and ``ReduceNight(night)``.

``ReduceExposure`` requires every checkpoint of one science exposure: detrended OTAs (with the night's own
masters unless ``-cals``/``-bias``/... say otherwise), with ``fixwcs``/``photcalib`` the astrometric and
photometric solutions, the final MEF (``CollectCells``) and its QA plots (``QAPlots``, unless
``-noqaplots``). ``ReduceNight`` requires ``ReduceExposure`` for every readable science exposure of the
night, ``ReduceNights`` every night of a date interval; both raise :class:`workflows.failures.NothingToDo`
(one line, a non-zero exit of the ``luigi`` command) when there is no raw data to reduce. The night summary (``workflows.qa.NightSummary``)
requires nothing, so that it can be made whatever failed: ``podiflow reduce`` builds it after each night.
"""

from __future__ import annotations

import luigi

from .collect import CollectCells
from .failures import NothingToDo
from .options import ReductionOptions
from .paths import night_index, raw_root
from .qa import QAPlots
from .settings import reduction_options

__all__ = ["ReduceExposure", "ReduceNight", "ReduceNights", "NIGHT_DEFAULTS", "science_exposures"]

#: What a night reduction does unless luigi.cfg's [reduction] says otherwise.
NIGHT_DEFAULTS = {"masters": ("bias", "dark", "flat")}

def _night_options(options: dict) -> dict:
    """Options for a night: ``[reduction]`` of luigi.cfg with the night defaults where it sets nothing."""
    opts = reduction_options()
    for key, value in NIGHT_DEFAULTS.items():
        if not getattr(opts, key):
            opts = opts.replace(**{key: value})
    merged = QAPlots.options_for(opts)
    merged.update(options)
    return merged


def science_exposures(night: str) -> list:
    """The readable science exposures of a night (night-index records).

    Raises
    ------
    workflows.failures.NothingToDo
        If the night has no raw folder or no science exposure in it (one line naming the folder).
    """
    folder = raw_root() / night
    if not folder.is_dir():
        raise NothingToDo(f"night {night}: no raw data: {folder} does not exist")
    science = night_index(night).select(obstype="OBJECT")
    if not science:
        raise NothingToDo(f"night {night}: no science exposure in {folder}: nothing to reduce")
    return science


class _Wrapper(luigi.WrapperTask):
    """A wrapper whose completeness check never raises.

    An error in a ``requires()`` below (no raw data, an unknown FILTER) then reaches Luigi through this
    task's own ``requires()``, as a scheduling error that carries its message (recorded by
    :mod:`workflows.failures`), not as a failed completeness check without one.
    """

    def complete(self):
        try:
            return super().complete()
        except Exception:  # noqa: BLE001  (raised again, with its message, by requires())
            return False


class ReduceExposure(_Wrapper):
    """Everything built so far for one science exposure."""

    obsid = luigi.Parameter()
    options = luigi.DictParameter(default={})

    def requires(self):
        opts = ReductionOptions.from_mapping(_night_options(dict(self.options)))
        final = CollectCells.with_options(opts, obsid=self.obsid)
        tasks = [final]
        for task in luigi.task.flatten(final.requires()):
            tasks += [task, *luigi.task.flatten(task.requires())]
        if not opts.noqaplots:
            tasks.append(QAPlots.with_options(opts, obsid=self.obsid))
        return tasks


class ReduceNight(_Wrapper):
    """Every readable science exposure of one observing night (``YYYYMMDD``)."""

    night = luigi.Parameter()
    options = luigi.DictParameter(default={})

    def requires(self):
        return [ReduceExposure(obsid=e.obsid, options=self.options) for e in science_exposures(self.night)]


class ReduceNights(_Wrapper):
    """Every night of a date interval that has a raw folder: ``--nights 2013-10-04-2013-10-06``.

    ``DateIntervalParameter`` ends are exclusive (that example is the nights of 4 and 5 October). Luigi's
    ``RangeDaily`` is not used: it clips ranges to the last 100 days, so it schedules no archival night.
    """

    nights = luigi.DateIntervalParameter(description="nights, e.g. 2013-10-04-2013-10-06 (end exclusive)")
    options = luigi.DictParameter(default={})

    def night_names(self) -> list:
        """``YYYYMMDD`` of the nights in the interval that have a raw folder."""
        names = [d.strftime("%Y%m%d") for d in self.nights.dates()]
        return [n for n in names if (raw_root() / n).is_dir()]

    def requires(self):
        names = self.night_names()
        if not names:
            raise NothingToDo(f"no night of {self.nights} has raw data under {raw_root()}")
        return [ReduceNight(night=n, options=self.options) for n in names]
