"""Site settings (``[podiflow]``) and reduction options (``[reduction]``) as ``luigi.Config`` sections.

``[reduction]`` is generated from :data:`workflows.options.OPTIONS`, so ``luigi.cfg`` and the
``podi_collectcells`` flags can never disagree on what an option is called or means.
"""

from __future__ import annotations

import functools

import luigi
from luigi.cmdline_parser import CmdlineParser

from .options import OPTIONS, ReductionOptions

__all__ = ["podiflow", "reduction", "reduction_options", "site"]


def _config_state(section: str) -> tuple:
    """What ``[section]`` currently says: the config object, the command-line parser and the section's raw
    items (one cheap read; a luigi.Config instance reads every parameter through the parser, ~20 us each)."""
    cfg = luigi.configuration.get_config()
    items = tuple(cfg.items(section, raw=True)) if cfg.has_section(section) else ()
    return id(cfg), id(CmdlineParser.get_instance()), items


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


@functools.lru_cache(maxsize=8)
def _site(state: tuple) -> podiflow:
    return podiflow()


def site() -> podiflow:
    """The ``[podiflow]`` settings, parsed once per state of the section (path helpers call this ~10^5
    times while a night is scheduled)."""
    return _site(_config_state("podiflow"))


def _reduction_class():
    attrs = {
        "__doc__": "Reduction options; keys and meanings as in workflows.options.OPTIONS.",
    }
    for opt in OPTIONS:
        attrs[opt.name] = luigi.Parameter(default=opt.format(opt.default), description=opt.doc)
    return type("reduction", (luigi.Config,), attrs)


reduction = _reduction_class()


@functools.lru_cache(maxsize=8)
def _configured_options(state: tuple) -> ReductionOptions:
    cfg = reduction()
    return ReductionOptions.from_mapping({opt.name: getattr(cfg, opt.name) for opt in OPTIONS})


def reduction_options(**overrides) -> ReductionOptions:
    """Return the ``[reduction]`` options of ``luigi.cfg``, with ``overrides`` (parsed values) on top."""
    return _configured_options(_config_state("reduction")).replace(**overrides)
