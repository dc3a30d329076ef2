"""Wrappers: ``ReduceExposure(obsid)`` and ``ReduceNight(night)``.

``ReduceExposure`` requires every checkpoint of one science exposure that exists so far: detrended OTAs
(with the night's own masters unless ``-cals``/``-bias``/... say otherwise) and, with ``fixwcs``, the
astrometric solution. ``ReduceNight`` requires ``ReduceExposure`` for every readable science exposure of
the night. Both require the whole chain explicitly, so a deleted intermediate is rebuilt on the next run.
"""

from __future__ import annotations

import luigi

from .astrometry import FixWCS
from .base import options_param
from .detrend import DetrendOTA, _record
from .options import ReductionOptions
from .paths import night_index
from .photometry import PhotCalib
from .settings import reduction_options

__all__ = ["ReduceExposure", "ReduceNight", "NIGHT_DEFAULTS"]

#: What a night reduction does unless luigi.cfg's [reduction] says otherwise.
NIGHT_DEFAULTS = {"masters": ("bias", "dark", "flat")}

_FAMILIES = ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib"]


def _night_options(options: dict) -> dict:
    """Options for a night: ``[reduction]`` of luigi.cfg with the night defaults where it sets nothing."""
    opts = reduction_options()
    for key, value in NIGHT_DEFAULTS.items():
        if not getattr(opts, key):
            opts = opts.replace(**{key: value})
    merged = options_param(opts, _FAMILIES)
    merged.update(options)
    return merged


class ReduceExposure(luigi.WrapperTask):
    """Everything built so far for one science exposure."""

    obsid = luigi.Parameter()
    options = luigi.DictParameter(default={})

    def requires(self):
        opts = _night_options(dict(self.options))
        detrend = options_param(ReductionOptions.from_mapping(opts), ["DetrendOTA"])
        tasks = [DetrendOTA(obsid=self.obsid, ota=ota, options=detrend) for ota in _record(self.obsid).otas]
        for task in list(tasks):
            tasks += luigi.task.flatten(task.requires())
        if opts.get("fixwcs") == "true" or opts.get("photcalib") == "true":
            tasks.append(FixWCS(obsid=self.obsid, options=opts))
        if opts.get("photcalib") == "true":
            tasks.append(PhotCalib(obsid=self.obsid, options=opts))
        return tasks


class ReduceNight(luigi.WrapperTask):
    """Every readable science exposure of one observing night (``YYYYMMDD``)."""

    night = luigi.Parameter()
    options = luigi.DictParameter(default={})

    def requires(self):
        return [ReduceExposure(obsid=e.obsid, options=self.options)
                for e in night_index(self.night).select(obstype="OBJECT")]
