"""Site settings (``[podiflow]``) and reduction options (``[reduction]``) as ``luigi.Config`` sections.

``[reduction]`` is generated from :data:`workflows.options.OPTIONS`, so ``luigi.cfg`` and the
``podi_collectcells`` flags can never disagree on what an option is called or means.
"""

from __future__ import annotations

import luigi

from .options import OPTIONS, ReductionOptions

__all__ = ["podiflow", "reduction", "reduction_options"]


class podiflow(luigi.Config):  # noqa: N801 -- luigi section names are the class names
    """Where podiflow finds its inputs and writes its products."""

    raw_dir = luigi.Parameter(default="raw", description="Raw data root: <raw_dir>/<night>/<obsid>/")
    work_dir = luigi.Parameter(default="work", description="Checkpoints: <work_dir>/<night>/...")
    out_dir = luigi.Parameter(default="out", description="Final MEFs, QA and night summaries")
    mastercals_dir = luigi.Parameter(
        default="mastercals", description="A mastercals tree in QuickReduce's layout (wcs/, bpm/, ...)"
    )
    refcat = luigi.Parameter(default="", description="Reference catalogue file or sharded folder")
    allow_network = luigi.BoolParameter(
        default=False, description="Allow online reference catalogues (astroquery)"
    )
    utc_offset_hours = luigi.FloatParameter(
        default=-7.0, description="Site local time minus UT, hours (observing-night rule)"
    )


def _reduction_class():
    attrs = {
        "__doc__": "Reduction options; keys and meanings as in workflows.options.OPTIONS.",
    }
    for opt in OPTIONS:
        attrs[opt.name] = luigi.Parameter(default=opt.format(opt.default), description=opt.doc)
    return type("reduction", (luigi.Config,), attrs)


reduction = _reduction_class()


def reduction_options(**overrides) -> ReductionOptions:
    """Return the ``[reduction]`` options of ``luigi.cfg``, with ``overrides`` (parsed values) on top."""
    cfg = reduction()
    values = {opt.name: getattr(cfg, opt.name) for opt in OPTIONS}
    return ReductionOptions.from_mapping(values).replace(**overrides)
